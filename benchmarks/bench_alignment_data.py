"""Data pipeline of the alignment task: renderer speed, loader speed and training-step data waits.

Renders a small FTPV set with 1 and with 2 worker processes (images/s, process start included),
then reads triplets from it with the uint8 frame cache and by re-reading the JPEG files
(triplets/s through a DataLoader, no model), and trains a few steps of the alignment model
both ways (triplets/s and the share of step time spent waiting for data).

    python benchmarks/bench_alignment_data.py [--img_size 64] [--steps 12] [--num_workers 1]
"""
import argparse
import os
import shutil
import tempfile
import time

import threedtrl.runtime.compat  # noqa: F401

import torch
from torch.utils.data import DataLoader

from threedtrl.alignment.embedder import MODEL_DEFAULTS, create_embedder
from threedtrl.alignment.engine import train_one_epoch
from threedtrl.alignment.sampler import EpochSampler
from data_pipeline import DATASETS, TrajectoryDataset, TripletDataset, open_split
from data_pipeline.render_ftpv import Preset, render_dataset
from threedtrl.runtime import seed_everything, write_json_atomic

MC = DATASETS["mc"]


def bench_renderer(out: str, preset: Preset, workers: int) -> float:
    start = time.perf_counter()
    render_dataset(out, preset, seed=0, workers=workers, progress=False)
    return preset.trajectories * (1 + preset.views) * preset.frames / (time.perf_counter() - start)


def make_loader(triplets: TripletDataset, batch: int, workers: int, limit: int) -> DataLoader:
    sampler = EpochSampler(len(triplets), seed=0, limit=limit)
    return DataLoader(triplets, batch_size=batch, sampler=sampler, num_workers=workers)


def bench_loader(triplets: TripletDataset, batch: int, workers: int, epochs: int = 2) -> float:
    """Triplets/s of the loader alone over whole epochs (the first one includes worker start-up)."""
    loader = make_loader(triplets, batch, workers, limit=0)
    start, count = time.perf_counter(), 0
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        triplets.set_epoch(epoch)
        for frames, _, _ in loader:
            count += len(frames)
    return count / (time.perf_counter() - start)


def bench_training(triplets: TripletDataset, args: argparse.Namespace) -> dict:
    seed_everything(0)
    embedder = create_embedder(dict(MODEL_DEFAULTS, model=args.model, img_size=args.img_size))
    loss_args = argparse.Namespace(loss="triplet", release_loss=False)
    optimizer = torch.optim.Adam(embedder.parameters(), lr=1e-4)
    loader = make_loader(triplets, args.batch_size, args.num_workers, limit=args.steps * args.batch_size)
    train_one_epoch(embedder, make_loader(triplets, args.batch_size, 0, limit=args.batch_size), optimizer,
                    torch.device("cpu"), loss_args, False, 0)  # warm-up step
    return train_one_epoch(embedder, loader, optimizer, torch.device("cpu"), loss_args, False, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--img_size", type=int, default=64)
    parser.add_argument("--render_size", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--model", default="vit_3dtrl_tiny_patch16_224")
    parser.add_argument("--out", default="output/bench/alignment_data.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    preset = Preset(MC.folder, trajectories=12, views=3, frames=12, size=args.render_size)
    tmp = tempfile.mkdtemp(prefix="bench_ftpv_")
    try:
        figures = {"cpu_threads": torch.get_num_threads(), "settings": vars(args)}
        figures["render_images_per_s"] = {w: bench_renderer(os.path.join(tmp, f"w{w}"), preset, w) for w in (1, 2)}
        for w, speed in figures["render_images_per_s"].items():
            print(f"renderer, {w} worker(s): {speed:.1f} images/s ({preset.size}x{preset.size}, start-up included)")

        trajectories, _ = open_split(os.path.join(tmp, "w1"), "mc", "train")
        figures["loader_triplets_per_s"], figures["training"] = {}, {}
        for cached in (True, False):
            label = "cache" if cached else "jpeg"
            start = time.perf_counter()
            data = TrajectoryDataset(trajectories, args.img_size, cache=cached, progress=False)
            figures[f"cache_fill_s_{label}"] = time.perf_counter() - start
            triplets = TripletDataset(data, MC.window, seed=0)
            figures["loader_triplets_per_s"][label] = bench_loader(triplets, args.batch_size, args.num_workers)
            figures["training"][label] = bench_training(triplets, args)
            train = figures["training"][label]
            print(f"{'uint8 cache' if cached else 're-read JPEGs'}: loader alone "
                  f"{figures['loader_triplets_per_s'][label]:.0f} triplets/s; training "
                  f"{train['items_per_s']:.1f} triplets/s, {train['data_wait_share']:.1%} of step time "
                  f"waiting for data ({args.model}, {args.img_size} px, batch {args.batch_size}, "
                  f"{args.num_workers} worker(s))")
        write_json_atomic(figures, args.out)
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
