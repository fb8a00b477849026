"""One epoch of alignment training."""
import argparse
import time
from typing import Dict

import torch
from torch import nn
from torch.utils.data import DataLoader

from runtime import progress_bar
from utils import AverageMeter

from .losses import npairs_loss, time_contrastive_loss

GRAD_CLIP = 10.0


def batch_loss(z: torch.Tensor, times: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """``z (B, V, K, D)``: triplets (V = 2 views, K = 3) or clips (V views, K = L frames) -> the loss
    ``--loss`` names."""
    if args.loss == "npairs":
        return npairs_loss(z, args.temperature, times, args.label_sigma)
    return time_contrastive_loss(z, release=args.release_loss)


def train_one_epoch(embedder: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    device: torch.device, args: argparse.Namespace, progress: bool, epoch: int) -> Dict[str, float]:
    """One pass over the sampler's items (triplets or clips). Returns mean loss, items/s and the
    share of time spent waiting for data."""
    embedder.train()
    loss_meter = AverageMeter()
    wait, start = 0.0, time.perf_counter()
    bar = progress_bar(total=len(loader), desc=f"epoch {epoch}", unit="step", enabled=progress)
    tick = time.perf_counter()
    samples = 0
    for frames, times, _ in loader:
        frames = frames.to(device, non_blocking=True)
        wait += time.perf_counter() - tick
        batch = frames.shape[0]
        z = embedder(frames.flatten(0, 2)).view(*frames.shape[:3], -1)
        loss = batch_loss(z, times.to(device), args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(embedder.parameters(), GRAD_CLIP)
        optimizer.step()
        loss_meter.update(loss.item(), batch)
        samples += batch
        bar.set_postfix(loss=f"{loss_meter.avg:.3f}")
        bar.update()
        tick = time.perf_counter()
    bar.close()
    elapsed = time.perf_counter() - start
    return {"train_loss": loss_meter.avg, "triplets_per_s": samples / max(elapsed, 1e-9),
            "data_wait_share": wait / max(elapsed, 1e-9), "steps": len(loader)}
