"""Evaluation of an alignment embedder: the metrics over every view pair of every trajectory. (What
3DTRL recovers during training and the nearest-frame plot are figures: ``visualization.alignment_report``.)"""
import itertools
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
def evaluate(embedder: Embedder, data: TrajectoryDataset, rt, batch: int, progress: bool = False,
             desc: str = "eval", view_names: Optional[Sequence[str]] = None
             ) -> Union[Dict[str, float], Tuple[Dict[str, float], List[Dict]]]:
    """Mean metrics over every view pair of every trajectory (trajectories split across the
    processes of ``rt``: ``rank``, ``world``, ``device``, ``all_sum``).

    With ``view_names`` (the split's views, in order) it returns ``(means, view_pairs)``: besides the
    means, each view pair's metrics averaged over the trajectories that have both views, as a list of
    ``{"views": [a, b], <metric>: value, ..., "trajectories": n}``."""
    was_training = embedder.training
    embedder.eval()
    width = len(METRICS) + 1  # the metrics' sums, then the number of pairs summed
    pairs = list(itertools.combinations(range(len(view_names)), 2)) if view_names is not None else []
    offset = {pair: width * (1 + p) for p, pair in enumerate(pairs)}
    sums = [0.0] * (width * (1 + len(pairs)))  # one flat list, gathered by one all_sum
    mine = range(rt.rank, len(data), rt.world)
    for k in progress_bar(mine, desc, enabled=progress, unit="traj"):
        z = embedder.video_embeddings(embed_trajectory(embedder, data[k], rt.device, batch))
        for pair, values in zip(itertools.combinations(range(len(z)), 2), pair_metrics(z)):
            starts = (0, offset[pair]) if pair in offset else (0,)
            for start in starts:
                for m, v in enumerate(values):
                    sums[start + m] += v
                sums[start + len(METRICS)] += 1
    sums = rt.all_sum(sums)
    embedder.train(was_training)
    means = {name: sums[m] / sums[len(METRICS)] for m, name in enumerate(METRICS)}
    if view_names is None:
        return means
    view_pairs = [{"views": [view_names[i], view_names[j]],
                   **{name: sums[start + m] / sums[start + len(METRICS)] for m, name in enumerate(METRICS)},
                   "trajectories": int(sums[start + len(METRICS)])}
                  for (i, j), start in offset.items() if sums[start + len(METRICS)]]
    return means, view_pairs


def per_view_means(view_pairs: Sequence[Dict], metric: str = "alignment_error") -> Dict[str, float]:
    """Each view's ``metric`` averaged over the pairs it is in (``view_pairs`` as :func:`evaluate` gives
    them): which views the mean over pairs hides, e.g. one camera at chance among good ones."""
    values: Dict[str, List[float]] = {}
    for pair in view_pairs:
        for view in pair["views"]:
            values.setdefault(view, []).append(pair[metric])
    return {view: sum(v) / len(v) for view, v in values.items()}
