"""One epoch of alignment training, and the weight-space ensemble of the trained model with its start."""
import argparse
import contextlib
import time
from typing import Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from threedtrl.runtime import UserError, check_finite_loss, progress_bar
from threedtrl.runtime.logs import AverageMeter

from .embedder import center_in_time
from .geometry_objectives import (cross_view_consistency, layer_pinhole, oracle_loss, photometric_reprojection,
                                  roll_equivariance, turn_quarter)
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


def geometry_terms(embedder: nn.Module, frames: torch.Tensor, targets: Optional[Dict[str, torch.Tensor]],
                   args: argparse.Namespace) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Embeddings of a batch of clips and the ``--geometry_loss`` terms of what 3DTRL recovers on them.

    Args:
        frames: ``(B, K, L, 3, H, W)`` uint8: K views x L instants.
        targets: the oracle's ``depth (B, K, L, N)`` and ``rotation (B, K, L, 3, 3)``.

    Returns:
        ``z (B, K, L, D)`` and each named term (a scalar). With ``equivariance`` the first instant of
        every view is also seen turned a quarter, in the same forward pass.
    """
    batch, views, length = frames.shape[:3]
    images = frames.flatten(0, 2)
    turned = turn_quarter(frames[:, :, 0]).flatten(0, 1) if "equivariance" in args.geometry_loss else None
    z, patches, geometry = embedder(images if turned is None else torch.cat([images, turned]), with_geometry=True)
    count = images.shape[0]
    depth, rotation = geometry.depth[:count, 0], geometry.rotation[:count]
    if patches.shape[1] != depth.shape[1]:
        raise UserError(f"--geometry_loss needs the backbone's output tokens on the 3DTRL layer's grid "
                        f"({patches.shape[1]} tokens out, {depth.shape[1]} in the layer): use a ViT or TnT")

    def per_instant(t: torch.Tensor) -> torch.Tensor:  # (B*K*L, ...) -> (B*L, K, ...)
        return t.unflatten(0, (batch, views, length)).transpose(1, 2).flatten(0, 1)

    terms = {}
    if "consistency" in args.geometry_loss:
        terms["consistency"] = cross_view_consistency(per_instant(geometry.points_world[:count, 0]),
                                                      per_instant(patches[:count]), args.match_temperature)
    if "reprojection" in args.geometry_loss:
        colours = F.adaptive_avg_pool2d(images.float() / 255, geometry.grid_size)          # (B*K*L, 3, h, w)
        terms["reprojection"] = photometric_reprojection(
            per_instant(geometry.points_world[:count, 0]), per_instant(rotation),
            per_instant(geometry.translation[:count]), per_instant(colours), *layer_pinhole(embedder))
    if "equivariance" in args.geometry_loss:
        first = torch.arange(batch * views, device=images.device) * length  # each view's first instant

        def of(index: torch.Tensor) -> Dict[str, torch.Tensor]:
            return {"rotation": geometry.rotation[index], "translation": geometry.translation[index],
                    "depth": geometry.depth[index, 0]}
        terms["equivariance"] = roll_equivariance(of(first), of(count + torch.arange(len(first), device=first.device)),
                                                  geometry.grid_size)
    if "oracle" in args.geometry_loss:
        terms["oracle"] = oracle_loss(depth, targets["depth"].flatten(0, 2).to(depth), per_instant(rotation),
                                      per_instant(targets["rotation"].flatten(0, 2).to(rotation)))
    return z[:count].view(batch, views, length, -1), terms


def train_one_epoch(embedder: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    device: torch.device, args: argparse.Namespace, progress: bool, epoch: int) -> Dict[str, float]:
    """One pass over the sampler's items (triplets or clips; with ``--geometry_loss`` the clips'
    geometric terms are added, weighted by ``--geometry_weight``). Returns mean loss (and each
    geometric term), items/s and the share of time spent waiting for data."""
    embedder.train()
    loss_meter = AverageMeter()
    term_meters: Dict[str, AverageMeter] = {}
    wait, start = 0.0, time.perf_counter()
    bar = progress_bar(total=len(loader), desc=f"epoch {epoch}", unit="step", enabled=progress)
    tick = time.perf_counter()
    samples = 0
    for frames, times, _, *targets in loader:
        frames = frames.to(device, non_blocking=True)
        wait += time.perf_counter() - tick
        batch = frames.shape[0]
        if args.geometry_loss:
            z, terms = geometry_terms(embedder, frames, targets[0] if targets else None, args)
        else:
            z, terms = embedder(frames.flatten(0, 2)).view(*frames.shape[:3], -1), {}
        loss = batch_loss(z, times.to(device), args) + args.geometry_weight * sum(terms.values())
        check_finite_loss(loss, f"epoch {epoch}, step {bar.n + 1}", "lower --lr")
        for name, term in terms.items():
            term_meters.setdefault(name, AverageMeter()).update(term.item(), batch)
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
    return {"train_loss": loss_meter.avg, **{f"{name}_loss": m.avg for name, m in term_meters.items()},
            "items_per_s": samples / max(elapsed, 1e-9), "data_wait_share": wait / max(elapsed, 1e-9),
            "steps": len(loader)}


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
