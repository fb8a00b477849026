"""Evaluation of an alignment embedder: the metrics over every view pair of every trajectory. (What
3DTRL recovers during training and the nearest-frame plot are figures: ``visualization.alignment_report``.)"""
import itertools
from typing import Dict, List, Tuple

import torch

from data_pipeline import TrajectoryDataset
from threedtrl.runtime import progress_bar

from .embedder import Embedder
from .metrics import alignment_metrics

METRICS = ("alignment_error", "cycle_error", "kendalls_tau", "kendalls_tau_b")


@torch.no_grad()
def embed_trajectory(embedder: Embedder, frames: torch.Tensor, device: torch.device, batch: int) -> torch.Tensor:
    """uint8 ``(V, T, 3, H, W)`` -> ``(V, T, D)`` embeddings (on the CPU)."""
    views, length = frames.shape[:2]
    flat = frames.flatten(0, 1)
    out = [embedder(flat[i:i + batch].to(device, non_blocking=True)).float().cpu()
           for i in range(0, len(flat), batch)]
    return torch.cat(out).view(views, length, -1)


def pair_metrics(z: torch.Tensor) -> List[Tuple[float, ...]]:
    """``METRICS`` of every unordered view pair ``(i, j), i < j`` of ``z (V, T, D)``."""
    pairs = [alignment_metrics(z[i], z[j]) for i, j in itertools.combinations(range(len(z)), 2)]
    return [tuple(metrics[name] for name in METRICS) for metrics in pairs]


@torch.no_grad()
def evaluate(embedder: Embedder, data: TrajectoryDataset, rt, batch: int,
             progress: bool = False, desc: str = "eval") -> Dict[str, float]:
    """Mean metrics over every view pair of every trajectory (trajectories split across the
    processes of ``rt``: ``rank``, ``world``, ``device``, ``all_sum``)."""
    was_training = embedder.training
    embedder.eval()
    sums = [0.0] * (len(METRICS) + 1)
    mine = range(rt.rank, len(data), rt.world)
    for k in progress_bar(mine, desc, enabled=progress, unit="traj"):
        z = embedder.video_embeddings(embed_trajectory(embedder, data[k], rt.device, batch))
        for values in pair_metrics(z):
            for m, v in enumerate(values):
                sums[m] += v
            sums[-1] += 1
    sums = rt.all_sum(sums)
    embedder.train(was_training)
    return {name: sums[m] / sums[-1] for m, name in enumerate(METRICS)}
