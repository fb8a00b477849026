"""One epoch of alignment training, and the weight-space ensemble of the trained model with its start."""
import argparse
import contextlib
import time
from typing import Dict, Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from runtime import check_finite_loss, progress_bar
from utils import AverageMeter

from .embedder import center_in_time
from .losses import npairs_loss, time_contrastive_loss

GRAD_CLIP = 10.0


def batch_loss(z: torch.Tensor, times: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """``z (B, V, K, D)``: triplets (V = 2 views, K = 3) or clips (V views, K = L frames) -> the loss
    ``--loss`` names."""
    if args.loss == "npairs":
        if args.center_in_time:  # as the embedder compares videos (Embedder.video_embeddings)
            z = center_in_time(z, unit=True)
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
        check_finite_loss(loss, f"epoch {epoch}, step {bar.n + 1}", "lower --lr")
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


class WeightEnsemble:
    """WiSE-FT (Wortsman et al., CVPR 2022): the model that is validated, kept and tested is
    ``alpha * trained + (1 - alpha) * start``, where ``start`` holds the weights ``net`` had when the
    ensemble was made (before training), or those given (a resumed run's, from its checkpoint).
    Fine-tuning on a few cameras then keeps more of what the start point knew about other cameras.
    ``alpha = 1``: the trained weights alone."""

    def __init__(self, net: nn.Module, alpha: float, start: Optional[Dict[str, torch.Tensor]] = None):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"the ensemble weight must lie in [0, 1], got {alpha}")
        self.net, self.alpha = net, alpha
        if alpha == 1.0:
            self.start = None
        else:
            self.start = start if start is not None else {k: v.detach().clone() for k, v in net.state_dict().items()}

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The ensembled weights (floating-point tensors interpolated, the others the trained ones)."""
        trained = self.net.state_dict()
        if self.start is None:
            return trained
        return {k: torch.lerp(self.start[k].to(v.device), v.detach(), self.alpha) if v.is_floating_point() else v
                for k, v in trained.items()}

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """``net`` holds the ensembled weights inside the block and its trained weights again after it."""
        if self.start is None:
            yield
            return
        trained = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.net.load_state_dict(self.state_dict())
        try:
            yield
        finally:
            self.net.load_state_dict(trained)
