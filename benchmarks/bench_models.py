"""Overhead of 3DTRL: parameters, MACs, throughput, the layer's own share, compiled models, metrics.

For ViT-T and ViT-S at 224 px it prints parameters and MACs (torch's FLOP counter, MACs =
FLOPs / 2; the MAC ratio bounds what a 3DTRL model can reach, 0.98 for ViT-T) and, in
``--rounds`` interleaved rounds (3DTRL model, plain model, the layer alone, and their compiled
twins in turn, so that load from other processes hits all alike):

- training (forward + backward + SGD step) and inference images/s and the ratio 3DTRL / plain,
  median and interquartile range of the per-round ratios;
- the layer's share of the 3DTRL training step: ``ThreeDTRL`` alone, forward and backward on its
  real input (``(B, 1 + N, D)`` tokens that need a gradient), over the whole step (target <= 3 %);
- for ``--compile-sizes``: the same ratio for ``torch.compile``d models, and compiled / eager.

Then the alignment metrics against the release's per-frame loops at one thread (min and median
of many rounds, same values asserted). Results are printed and written as JSON.

    python benchmarks/bench_models.py                                  # CPU, batch 32
    python benchmarks/bench_models.py --device cuda --batch-size 256 --channels-last
"""
import argparse
import math
import statistics
import time

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)
import numpy as np
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import model  # noqa: F401  (registers the 3DTRL models)
from threedtrl import runtime
import utils
from threedtrl.runtime.memory import peak_memory_table

PAIRS = {"tiny": ("vit_3dtrl_tiny_patch16_224", "vit_tiny_patch16_224"),
         "small": ("vit_3dtrl_small_patch16_224", "vit_small_patch16_224")}
LAYER_SHARE_TARGET = 0.03
GPU_RATIO_TARGET = 0.97
METRIC_SPEEDUP_TARGET = 100


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=sorted(PAIRS))
    parser.add_argument("--compile-sizes", nargs="*", default=["tiny"], choices=sorted(PAIRS),
                        help="sizes also measured compiled (torch.compile, training and inference)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 256 on CUDA")
    parser.add_argument("--channels-last", action="store_true", help="channels-last inputs and weights")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timed rounds (>= 15 for the IQR)")
    parser.add_argument("--frames", type=int, default=300, help="sequence length for the metric benchmark")
    parser.add_argument("--metric-rounds", type=int, default=15, help="timed rounds of the metric benchmark")
    parser.add_argument("--json", default="output/bench_models.json", help="results file")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- MACs

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


# ----------------------------------------------------------------------------- timing

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def model_step(net, images, labels, train: bool, device: torch.device):
    """One training (forward, backward, SGD step) or inference step on a fixed batch."""
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-4) if train else None

    def step():
        if train:
            with _autocast(device):
                loss = torch.nn.functional.cross_entropy(net(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            with torch.no_grad(), _autocast(device):
                net(images)
    return step


def layer_step(net, batch: int, device: torch.device):
    """The model's ``three_d_trl`` alone, forward and backward, on tokens ``(B, 1 + N, D)`` that
    need a gradient (as inside the model) with the model's 2D position embedding."""
    grid = net.patch_embed.grid_size
    tokens = torch.randn(batch, 1 + grid[0] * grid[1], net.embed_dim, device=device, requires_grad=True)
    upstream = torch.randn_like(tokens)

    def step():
        with _autocast(device):
            out = net.three_d_trl(tokens, grid, net.pos_embed)
        out.backward(upstream)
        tokens.grad = None
        net.zero_grad(set_to_none=True)
    return step


def interleaved_seconds(steps: dict, rounds: int, device: torch.device) -> dict:
    """Seconds per call of every step function, one list of ``rounds`` timings per key; in each
    round every function runs once, in turn (after two warm-up calls each)."""
    for step in steps.values():
        step()
        step()
    times = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[key].append(time.perf_counter() - start)
    return times


def median_iqr(values) -> dict:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return {"median": float(q2), "q1": float(q1), "q3": float(q3)}


def per_round_ratio(numerator, denominator) -> dict:
    """Median and IQR of ``numerator[i] / denominator[i]`` over rounds."""
    return median_iqr([n / d for n, d in zip(numerator, denominator)])


def _fmt(stat: dict, digits: int = 3) -> str:
    return f"{stat['median']:.{digits}f} (IQR {stat['q1']:.{digits}f}-{stat['q3']:.{digits}f})"


# ----------------------------------------------------------------------------- models

def build_pair(size: str, device: torch.device, channels_last: bool) -> dict:
    trl_name, base_name = PAIRS[size]
    torch.manual_seed(0)
    nets = {"3dtrl": timm.create_model(trl_name), "plain": timm.create_model(base_name)}
    for net in nets.values():
        net.to(device)
        if channels_last:
            net.to(memory_format=torch.channels_last)
    return nets


def bench_size(size: str, args, device: torch.device, batch: int) -> dict:
    """Throughput ratios, layer share and (optionally) compiled figures of one ViT size."""
    nets = build_pair(size, device, args.channels_last)
    params = {k: sum(p.numel() for p in n.parameters()) for k, n in nets.items()}
    macs = {k: count_macs(n.eval().cpu()) for k, n in nets.items()}
    for net in nets.values():
        net.to(device)
    result = {"params": params, "macs": macs, "mac_limit": macs["plain"] / macs["3dtrl"], "batch": batch}
    print(f"\nViT-{size[0].upper()} at 224 px, batch {batch}: params {params['plain'] / 1e6:.2f}M -> "
          f"{params['3dtrl'] / 1e6:.2f}M, MACs {macs['plain'] / 1e9:.2f}G -> {macs['3dtrl'] / 1e9:.2f}G "
          f"(limit of the ratio: {result['mac_limit']:.3f})")
    images = torch.randn(batch, 3, 224, 224, device=device)
    if args.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,), device=device)
    compiled = {k: torch.compile(n) for k, n in nets.items()} if size in args.compile_sizes else {}
    for mode in ("train", "inference"):
        train = mode == "train"
        steps = {}
        for key, net in nets.items():
            net.train(train)
            steps[key] = model_step(net, images, labels, train, device)
        if train:
            steps["layer"] = layer_step(nets["3dtrl"], batch, device)
        for key, net in compiled.items():
            steps["compiled " + key] = model_step(net, images, labels, train, device)
        start = time.perf_counter()
        times = interleaved_seconds(steps, args.rounds, device)
        figures = {"images_per_s": {k: batch / statistics.median(t) for k, t in times.items() if k != "layer"},
                   "ratio": per_round_ratio(times["plain"], times["3dtrl"]),
                   "peak_memory_mb": peak_memory_table({k: steps[k] for k in steps if k != "layer"}, device)}
        if figures["peak_memory_mb"]:
            peaks = figures["peak_memory_mb"]
            figures["memory_overhead"] = peaks["3dtrl"] / peaks["plain"] - 1
        line = (f"  {mode:9s} plain {figures['images_per_s']['plain']:7.1f} img/s, 3dtrl "
                f"{figures['images_per_s']['3dtrl']:7.1f} img/s, ratio {_fmt(figures['ratio'])}")
        if "memory_overhead" in figures:
            line += (f"\n            peak memory {figures['peak_memory_mb']['plain']:.0f} -> "
                     f"{figures['peak_memory_mb']['3dtrl']:.0f} MiB ({100 * figures['memory_overhead']:+.1f} %)")
        if train:
            figures["layer_share"] = per_round_ratio(times["layer"], times["3dtrl"])
            share = figures["layer_share"]
            line += (f"\n            layer alone {1e3 * statistics.median(times['layer']):.1f} ms = "
                     f"{100 * share['median']:.2f} % of the step (IQR {100 * share['q1']:.2f}-{100 * share['q3']:.2f}),"
                     f" target <= {100 * LAYER_SHARE_TARGET:.0f} %"
                     f" {'met' if share['median'] <= LAYER_SHARE_TARGET else 'MISSED'}")
        if compiled:
            figures["compiled_ratio"] = per_round_ratio(times["compiled plain"], times["compiled 3dtrl"])
            figures["compiled_over_eager"] = {k: per_round_ratio(times[k], times["compiled " + k]) for k in nets}
            line += (f"\n            compiled: ratio {_fmt(figures['compiled_ratio'])}; compiled / eager speed "
                     f"3dtrl {_fmt(figures['compiled_over_eager']['3dtrl'], 2)}, "
                     f"plain {_fmt(figures['compiled_over_eager']['plain'], 2)}")
        figures["seconds"] = time.perf_counter() - start
        result[mode] = figures
        print(line, flush=True)
    return result


# ----------------------------------------------------------------------------- metrics

def _release_nearest(z1: torch.Tensor, i: int, z2: torch.Tensor) -> torch.Tensor:
    """The release's per-frame search: squared distances of frame ``i`` of ``z1`` to every frame of
    ``z2`` as ``sum(|a - b|^2)``, then ``argmin`` (a 0-d tensor)."""
    dim = z1.shape[1]
    candidates = z2.reshape(-1, dim)
    diffs = (z1[i:i + 1].expand_as(z2).reshape(-1, dim) - candidates).abs()
    return torch.argmin(diffs.pow(2).sum(dim=-1))


def release_alignment_error(z1, z2) -> float:
    length = z1.shape[0]
    matches = [_release_nearest(z1, i, z2) for i in range(length)]
    return float(np.mean([abs(i - matches[i]) / length for i in range(length)]))


def release_cycle_error(z1, z2) -> float:
    length = z1.shape[0]
    back = [_release_nearest(z2, int(_release_nearest(z1, i, z2)), z1) for i in range(length)]
    return float(np.mean([abs(i - back[i]) / length for i in range(length)]))


def release_kendalls_tau(z1, z2) -> float:
    length = z1.shape[0]
    matches = [_release_nearest(z1, i, z2) for i in range(length)]
    concordant = sum(1 for i in range(length) for j in range(i + 1, length) if matches[i] < matches[j])
    total = length * (length - 1) / 2
    return (concordant - (total - concordant)) / total


def release_all(z1, z2) -> dict:
    """The three release metrics, called one after the other as its evaluation does."""
    return {"alignment_error": release_alignment_error(z1, z2), "cycle_error": release_cycle_error(z1, z2),
            "kendalls_tau": release_kendalls_tau(z1, z2)}


def _seconds(fn, *inputs):
    start = time.perf_counter()
    value = fn(*inputs)
    return time.perf_counter() - start, value


def bench_metrics(frames: int, rounds: int) -> dict:
    """Release loops vs this project's metrics at one thread each: after a warm-up call of each,
    ``rounds`` rounds that time the release once and ours five times, in turn; min and median."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        z1, z2 = torch.randn(frames, 192), torch.randn(frames, 192)
        cases = {
            "alignment_error": (release_alignment_error, utils.alignment_error),
            "cycle_error": (release_cycle_error, utils.cycle_error),
            "kendalls_tau": (release_kendalls_tau, utils.kendalls_tau),
            "all three": (release_all, utils.alignment_metrics),
        }
        print(f"\nAlignment metrics at {frames} frames, one thread (min / median of {rounds} rounds; target >= "
              f"{METRIC_SPEEDUP_TARGET}x):")
        result = {}
        for name, (release_fn, ours_fn) in cases.items():
            expected, got = release_fn(z1, z2), ours_fn(z1, z2)
            if name == "all three":
                assert all(abs(expected[k] - got[k]) < 1e-6 for k in expected), "metrics disagree with the release"
            else:
                assert abs(expected - got) < 1e-6, f"{name} disagrees with the release"
            slow, fast = [], []
            for _ in range(rounds):
                slow.append(_seconds(release_fn, z1, z2)[0])
                fast += [_seconds(ours_fn, z1, z2)[0] for _ in range(5)]
            slow_ms = [1e3 * min(slow), 1e3 * statistics.median(slow)]
            fast_ms = [1e3 * min(fast), 1e3 * statistics.median(fast)]
            result[name] = {"release_ms": slow_ms, "ours_ms": fast_ms, "speedup_min": slow_ms[0] / fast_ms[0],
                            "speedup_median": slow_ms[1] / fast_ms[1]}
            print(f"  {name:16s} release {slow_ms[0]:7.1f} / {slow_ms[1]:7.1f} ms   ours {fast_ms[0]:6.3f} / "
                  f"{fast_ms[1]:6.3f} ms   speed-up {result[name]['speedup_min']:5.0f}x / "
                  f"{result[name]['speedup_median']:5.0f}x")
        print("  ('all three': the release's three calls vs utils.alignment_metrics, which also returns tau-b)")
        return result
    finally:
        torch.set_num_threads(threads)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    batch = args.batch_size or (256 if device.type == "cuda" else 32)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}, timm {timm.__version__}"
          + ("; bf16 autocast" if device.type == "cuda" else "") + ("; channels-last" if args.channels_last else "")
          + f"; {args.rounds} interleaved rounds"
          + (f"; target on GPU: ratio >= {GPU_RATIO_TARGET}" if device.type == "cuda" else ""))
    results = {"device": name, "torch": torch.__version__, "rounds": args.rounds,
               "sizes": {size: bench_size(size, args, device, batch) for size in args.sizes},
               "metrics": bench_metrics(args.frames, args.metric_rounds)}
    runtime.write_json_atomic(results, args.json)
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    runtime.run_cli(main)
