"""Throughput of TimeSformer + 3DTRL against TimeSformer of the same depth (clips per second).

    python benchmarks/bench_timesformer.py                      # CPU, the demo size
    python benchmarks/bench_timesformer.py --device cuda        # GPU, ViT-B 8x224, bf16 autocast

The two models are timed in alternation (``--rounds`` rounds, median reported) so that load
from other processes affects both alike. Results are printed and written as JSON.
"""
import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.dirname(ROOT)]

import compat  # noqa: E402,F401  (must precede the first timm/torchvision import)
import torch  # noqa: E402

from timesformer.config import load_config  # noqa: E402
from timesformer.model import build_model  # noqa: E402
from utils import UserError, run_cli, write_json_atomic  # noqa: E402

SIZES = {
    # the CPU demo: width 192, 4 blocks (3DTRL before block 2), 4 frames of 64 px, patch 16
    "demo": ["TIMESFORMER.EMBED_DIM", "192", "TIMESFORMER.NUM_HEADS", "3", "TIMESFORMER.DEPTH", "4", "TRL.LOC", "2",
             "TIMESFORMER.PATCH_SIZE", "16", "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "64",
             "DATA.TEST_CROP_SIZE", "64", "DATA.TRAIN_JITTER_SCALES", "[64, 80]"],
    # the release's model: ViT-B, 16 blocks, 3DTRL before block 12, 8 frames of 224 px
    "vit_b_8x224": ["TIMESFORMER.DEPTH", "16", "TRL.LOC", "12", "DATA.NUM_FRAMES", "8"],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", default=None, choices=sorted(SIZES), help="default: demo on cpu, vit_b_8x224 on cuda")
    parser.add_argument("--attention", default="divided_space_time",
                        choices=["divided_space_time", "joint_space_time", "space_only"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", default="output/bench_timesformer.json")
    return parser.parse_args(argv)


def build(size: str, attention: str, trl: bool, device: torch.device) -> torch.nn.Module:
    cfg = load_config(None, SIZES[size] + ["TIMESFORMER.ATTENTION_TYPE", attention, "TRL.ENABLE", str(trl),
                                           "MODEL.NUM_CLASSES", "400", "TIMESFORMER.DROP_PATH_RATE", "0.0"])
    return build_model(cfg).to(device), cfg


def step_fn(model, clips, labels, train: bool, amp: bool):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4) if train else None

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp), torch.set_grad_enabled(train):
            logits = model(clips)
        if train:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return step


def clips_per_second(step, iters: int, batch: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iters * batch / (time.perf_counter() - tic)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no GPU is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = args.size or ("demo" if device.type == "cpu" else "vit_b_8x224")
    amp = device.type == "cuda"
    torch.manual_seed(0)
    models = {name: build(size, args.attention, trl, device) for name, trl in (("timesformer", False),
                                                                                ("timesformer_3dtrl", True))}
    cfg = models["timesformer"][1]
    crop = cfg.DATA.TRAIN_CROP_SIZE
    clips = torch.randn(args.batch, 3, cfg.DATA.NUM_FRAMES, crop, crop, device=device)
    labels = torch.randint(0, 400, (args.batch,), device=device)
    results = {"device": torch.cuda.get_device_name() if amp else f"cpu ({torch.get_num_threads()} threads)",
               "size": size, "attention": args.attention, "batch": args.batch, "frames": cfg.DATA.NUM_FRAMES,
               "crop": crop, "bf16_autocast": amp, "params_m": {}, "clips_per_s": {}}
    for name, (model, _) in models.items():
        results["params_m"][name] = sum(p.numel() for p in model.parameters()) / 1e6
    for mode in ("inference", "train"):
        steps = {}
        for name, (model, _) in models.items():
            model.train(mode == "train")
            steps[name] = step_fn(model, clips, labels, mode == "train", amp)
            steps[name]()                                    # warm-up
        samples = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, step in steps.items():
                samples[name].append(clips_per_second(step, args.iters, args.batch, device))
        rates = {name: statistics.median(v) for name, v in samples.items()}
        results["clips_per_s"][mode] = rates
        results["clips_per_s"][f"{mode}_ratio_3dtrl"] = rates["timesformer_3dtrl"] / rates["timesformer"]
    write_json_atomic(results, args.out)
    print(f"{results['device']}, {size} ({args.attention}), batch {args.batch}, {cfg.DATA.NUM_FRAMES}x{crop}px")
    print(f"params (M): TimeSformer {results['params_m']['timesformer']:.2f}, "
          f"+3DTRL {results['params_m']['timesformer_3dtrl']:.2f}")
    for mode in ("inference", "train"):
        rates = results["clips_per_s"][mode]
        print(f"{mode:9s} clips/s: TimeSformer {rates['timesformer']:.1f}, +3DTRL {rates['timesformer_3dtrl']:.1f}, "
              f"ratio {results['clips_per_s'][f'{mode}_ratio_3dtrl']:.3f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
