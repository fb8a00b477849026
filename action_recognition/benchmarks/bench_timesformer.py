"""Throughput of TimeSformer + 3DTRL against TimeSformer of the same depth, and of the video loader.

    python benchmarks/bench_timesformer.py                      # CPU, the demo size
    python benchmarks/bench_timesformer.py --device cuda        # GPU, ViT-B 8x224, bf16 autocast
    python benchmarks/bench_timesformer.py --compile            # also compiled models

The models are timed in alternation (``--rounds`` rounds, median reported) so that load from
other processes affects all alike. The loader part writes ``--loader-videos`` synthetic
videos (600 frames, 320x240, MPEG-4) and reads training clips of 8 frames, 8 and 32 apart, as
``VideoDataset`` does, seeking to far frames and decoding every frame up to the clip
(the previous reader), and seeking with ``DATA.SPATIAL_SAMPLING opencv``, alternately. Results are
printed and written as JSON.
"""
import argparse
import os
import statistics
import tempfile
import time


import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)
import cv2
import numpy as np
import torch

from threedtrl.timesformer.config import load_config
from threedtrl.timesformer.dataset import SEEK_AHEAD, VideoDataset
from threedtrl.timesformer.model import build_model
from threedtrl.runtime import UserError, compile_model, run_cli, write_json_atomic
from threedtrl.runtime.memory import peak_memory_table

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
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd models (inductor)")
    parser.add_argument("--loader-videos", type=int, default=8, help="synthetic videos for the loader (0: skip)")
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


def write_videos(folder: str, count: int, frames: int = 600, size=(320, 240)) -> None:
    """``count`` MPEG-4 videos of moving noise and ``train.csv`` listing them (label 0)."""
    rng = np.random.default_rng(0)
    with open(os.path.join(folder, "train.csv"), "w") as listing:
        for k in range(count):
            name = f"video_{k}.mp4"
            writer = cv2.VideoWriter(os.path.join(folder, name), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
            base = rng.integers(0, 255, (size[1], size[0] + frames, 3), dtype=np.uint8)
            for t in range(frames):
                writer.write(np.ascontiguousarray(base[:, t:t + size[0]]))
            writer.release()
            listing.write(f"{name} 0\n")


LOADER_MODES = (("seek", SEEK_AHEAD, "slowfast"), ("in_order", 10 ** 9, "slowfast"),
                ("seek_opencv_resize", SEEK_AHEAD, "opencv"))


def bench_loader(num_videos: int, rounds: int) -> dict:
    """Training clips per second of ``VideoDataset`` (no workers): seeking vs decoding in order, and the
    release's spatial sampling (the default) vs the OpenCV resizing of ``DATA.SPATIAL_SAMPLING opencv``."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        write_videos(folder, num_videos)
        for frames, rate in ((8, 8), (8, 32)):
            configs = {spatial: load_config(None, ["DATA.PATH_TO_DATA_DIR", folder, "DATA.NUM_FRAMES", str(frames),
                                                   "DATA.SAMPLING_RATE", str(rate), "DATA.SPATIAL_SAMPLING", spatial])
                       for spatial in ("slowfast", "opencv")}
            samples = {mode: [] for mode, _, _ in LOADER_MODES}
            for r in range(max(1, rounds // 3)):
                for mode, seek_ahead, spatial in LOADER_MODES:
                    reader = VideoDataset(configs[spatial], "train")
                    reader.seek_ahead = seek_ahead
                    reader.set_epoch(r)
                    tic = time.perf_counter()
                    for index in range(len(reader)):
                        reader[index]
                    samples[mode].append(len(reader) / (time.perf_counter() - tic))
            results[f"{frames}x{rate}"] = {mode: statistics.median(v) for mode, v in samples.items()}
    return results


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
    if args.compile:
        models.update({f"compiled {name}": (compile_model(model), c) for name, (model, c) in list(models.items())})
    for mode in ("inference", "train"):
        steps = {}
        for name, (model, _) in models.items():
            model.train(mode == "train")
            steps[name] = step_fn(model, clips, labels, mode == "train", amp)
            steps[name]()                                    # warm-up (and compilation)
            steps[name]()
        samples = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, step in steps.items():
                samples[name].append(clips_per_second(step, args.iters, args.batch, device))
        rates = {name: statistics.median(v) for name, v in samples.items()}
        results["clips_per_s"][mode] = rates
        peaks = peak_memory_table(steps, device)
        if peaks:
            results.setdefault("peak_memory_mb", {})[mode] = peaks
            results.setdefault("memory_overhead", {})[mode] = peaks["timesformer_3dtrl"] / peaks["timesformer"] - 1
        results["clips_per_s"][f"{mode}_ratio_3dtrl"] = rates["timesformer_3dtrl"] / rates["timesformer"]
        if args.compile:
            results["clips_per_s"][f"{mode}_ratio_3dtrl_compiled"] = (rates["compiled timesformer_3dtrl"]
                                                                     / rates["compiled timesformer"])
    write_json_atomic(results, args.out)
    print(f"{results['device']}, {size} ({args.attention}), batch {args.batch}, {cfg.DATA.NUM_FRAMES}x{crop}px")
    print(f"params (M): TimeSformer {results['params_m']['timesformer']:.2f}, "
          f"+3DTRL {results['params_m']['timesformer_3dtrl']:.2f}")
    for mode in ("inference", "train"):
        rates = results["clips_per_s"][mode]
        print(f"{mode:9s} clips/s: TimeSformer {rates['timesformer']:.1f}, +3DTRL {rates['timesformer_3dtrl']:.1f}, "
              f"ratio {results['clips_per_s'][f'{mode}_ratio_3dtrl']:.3f}")
        if args.compile:
            print(f"          compiled: TimeSformer {rates['compiled timesformer']:.1f}, +3DTRL "
                  f"{rates['compiled timesformer_3dtrl']:.1f}, ratio "
                  f"{results['clips_per_s'][f'{mode}_ratio_3dtrl_compiled']:.3f}; compiled / eager "
                  f"{rates['compiled timesformer_3dtrl'] / rates['timesformer_3dtrl']:.2f} (+3DTRL), "
                  f"{rates['compiled timesformer'] / rates['timesformer']:.2f} (plain)")
    if args.loader_videos:
        results["loader"] = bench_loader(args.loader_videos, args.rounds)
        for setting, rates in results["loader"].items():
            print(f"loader {setting}: {rates['seek']:.1f} clips/s seeking, {rates['in_order']:.1f} decoding every "
                  f"frame up to the clip ({rates['seek'] / rates['in_order']:.2f}x); with OpenCV resizing "
                  f"{rates['seek_opencv_resize']:.1f} (release's sampling / OpenCV "
                  f"{rates['seek'] / rates['seek_opencv_resize']:.2f}); the training step above: "
                  f"{results['clips_per_s']['train']['timesformer_3dtrl']:.1f} clips/s")
    write_json_atomic(results, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
