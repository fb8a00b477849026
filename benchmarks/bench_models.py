"""Overhead of 3DTRL: parameters, MACs and throughput against the same timm model without it.

For ViT-T and ViT-S at 224 px it prints parameters, MACs (torch's FLOP counter, MACs =
FLOPs / 2) and images/s for training (forward + backward + SGD step) and inference, with
the 3DTRL model and its baseline measured alternately in one process; each figure is the
median of ``--runs`` timed runs and the ratio is 3DTRL / baseline. On CUDA it uses bf16
autocast. It also times the vectorised alignment metrics against per-frame loops.

    python benchmarks/bench_models.py                      # CPU, batch 32
    python benchmarks/bench_models.py --device cuda --batch-size 256
"""
import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import compat  # noqa: E402,F401

import timm  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import model  # noqa: E402,F401
import utils  # noqa: E402

PAIRS = {"tiny": ("vit_3dtrl_tiny_patch16_224", "vit_tiny_patch16_224"),
         "small": ("vit_3dtrl_small_patch16_224", "vit_small_patch16_224")}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=sorted(PAIRS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 256 on CUDA")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per model and mode (median)")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed run")
    parser.add_argument("--frames", type=int, default=300, help="sequence length for the metric benchmark")
    return parser.parse_args()


def _elementwise_flops(per_element_macs: int):
    """A FLOP-counter entry charging ``per_element_macs`` MACs per element of the input."""
    def count(input_shape, *args, out_shape=None, **kwargs) -> int:
        return 2 * per_element_macs * math.prod(input_shape)
    return count


# Counting convention: MACs of linear and convolution layers plus one per activation
# (GELU, ReLU) element; normalisation and the attention products (q k^T, attn v, which torch
# runs as one fused kernel) are not counted. With it, ViT-T reads 1.08G -> 1.10G and ViT-S
# 4.24G -> 4.33G, as in the paper's Table 1.
_ELEMENTWISE = {
    torch.ops.aten.gelu: _elementwise_flops(1),
    torch.ops.aten.relu: _elementwise_flops(1),
}


def count_macs(net: torch.nn.Module, size: int = 224) -> float:
    """MACs of one ``size`` x ``size`` image, counted by torch's FLOP counter (MACs = FLOPs / 2)."""
    counter = FlopCounterMode(display=False, custom_mapping=_ELEMENTWISE)
    with counter, torch.no_grad():
        net(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(net, images, labels, train: bool, device: torch.device):
    """A closure that runs one training or inference step on a fixed batch."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-4) if train else None

    def step():
        if train:
            with autocast:
                loss = torch.nn.functional.cross_entropy(net(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), autocast:
                net(images)
    return step


def interleaved_throughput(steps: dict, batch: int, runs: int, steps_per_run: int, device) -> dict:
    """images/s per key, median over ``runs`` rounds in which every step function runs in turn."""
    for step in steps.values():  # warm-up
        step()
    times = {key: [] for key in steps}
    for _ in range(runs):
        for key, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps_per_run):
                step()
            _sync(device)
            times[key].append(time.perf_counter() - start)
    return {key: batch * steps_per_run / statistics.median(t) for key, t in times.items()}


def bench_size(size: str, args, device: torch.device, batch: int) -> None:
    trl_name, base_name = PAIRS[size]
    torch.manual_seed(0)
    nets = {"3dtrl": timm.create_model(trl_name), "base": timm.create_model(base_name)}
    params = {k: sum(p.numel() for p in n.parameters()) for k, n in nets.items()}
    macs = {k: count_macs(n.eval()) for k, n in nets.items()}
    print(f"\nViT-{size[0].upper()} at 224 px: params {params['base'] / 1e6:.2f}M -> {params['3dtrl'] / 1e6:.2f}M, "
          f"MACs {macs['base'] / 1e9:.2f}G -> {macs['3dtrl'] / 1e9:.2f}G")
    images = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    for mode in ("train", "inference"):
        steps = {}
        for key, net in nets.items():
            net.to(device).train(mode == "train")
            steps[key] = make_step(net, images, labels, mode == "train", device)
        speed = interleaved_throughput(steps, batch, args.runs, args.steps, device)
        print(f"  {mode:9s} batch {batch}: base {speed['base']:8.1f} img/s   3dtrl {speed['3dtrl']:8.1f} img/s"
              f"   ratio {speed['3dtrl'] / speed['base']:.3f}")


def _nearest_per_frame(z1, z2):
    return [int(((z2 - z1[i]) ** 2).sum(1).argmin()) for i in range(len(z1))]


def metrics_per_frame_loop(z1, z2):
    """The alignment metrics the way a per-frame loop computes them (reference for speed)."""
    length = len(z1)
    nn12, nn21 = _nearest_per_frame(z1, z2), _nearest_per_frame(z2, z1)
    align = sum(abs(i - nn12[i]) for i in range(length)) / length / length
    cycle = sum(abs(i - nn21[nn12[i]]) for i in range(length)) / length / length
    concordant = sum(1 for i in range(length) for j in range(i + 1, length) if nn12[i] < nn12[j])
    total = length * (length - 1) // 2
    return align, cycle, (2 * concordant - total) / total


def metrics_vectorised(z1, z2):
    return utils.alignment_error(z1, z2), utils.cycle_error(z1, z2), utils.kendalls_tau(z1, z2)


def bench_metrics(frames: int) -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(frames, 192), torch.randn(frames, 192)
    timings = {}
    for name, fn in (("loop", metrics_per_frame_loop), ("vectorised", metrics_vectorised)):
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            result = fn(z1, z2)
            runs.append(time.perf_counter() - start)
        timings[name] = (statistics.median(runs), result)
    loop, vec = timings["loop"], timings["vectorised"]
    assert all(abs(a - b) < 1e-9 for a, b in zip(loop[1], vec[1])), "vectorised metrics disagree with the loop"
    print(f"\nAlignment metrics at {frames} frames (alignment + cycle + tau): per-frame loop {loop[0] * 1e3:.1f} ms, "
          f"vectorised {vec[0] * 1e3:.2f} ms, speed-up {loop[0] / vec[0]:.0f}x")


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    batch = args.batch_size or (256 if device.type == "cuda" else 32)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}, timm {timm.__version__}"
          + ("; bf16 autocast" if device.type == "cuda" else ""))
    for size in args.sizes:
        bench_size(size, args, device, batch)
    bench_metrics(args.frames)


if __name__ == "__main__":
    main()
