"""What the alignment training reports about its model besides the metrics: the spread (and, with
ground truth, the accuracy) of the geometry 3DTRL recovers, and the nearest-frame plot."""
import itertools
import os
from typing import Dict, Sequence

import numpy as np
import torch

from threedtrl.alignment.embedder import Embedder
from threedtrl.alignment.evaluation import embed_trajectory
from threedtrl.alignment.metrics import alignment_error_of_matches, nearest_frames
from data_pipeline import TrajectoryDataset, view_folder_names
from data_pipeline.ground_truth import load_ground_truth

from .inference import recover


@torch.no_grad()
def geometry_stats(embedder: Embedder, data: TrajectoryDataset, views: Sequence[int], device: torch.device,
                   batch: int, max_trajectories: int = 2) -> Dict[str, float]:
    """What 3DTRL recovers on (the first trajectories of) a split: spread of pseudo-depth over the
    tokens of an image, of the rotation angle and translation over the images, and, where the data
    has ground truth, the depth rank correlation and the relative-rotation error (degrees)."""
    from . import geometry_eval  # scipy loads only when the report is made: the script's refusals stay fast
    names = view_folder_names(views)
    was_training = embedder.training
    embedder.eval()
    scores, depth_std, rotations, translations = geometry_eval.GeometryScores(), [], [], []
    for k in range(min(len(data), max_trajectories)):
        rec = recover(embedder, data[k].numpy(), batch, str(device))
        depth_std.append(rec.depth.reshape(-1, rec.depth[0, 0].size).std(axis=1).mean())
        rotations.append(rec.rotation.reshape(-1, 3, 3))
        translations.append(rec.translation.reshape(-1, 3))
        if os.path.isfile(os.path.join(data.trajectories[k].path, geometry_eval.GROUND_TRUTH)):
            truth = load_ground_truth(data.trajectories[k].path, names)
            scores.add("model", rec.depth, rec.rotation, rec.translation, truth)
    rotations, translations = np.concatenate(rotations), np.concatenate(translations)
    angles = geometry_eval.rotation_angle_deg(rotations)
    stats = {"depth_std_over_tokens": float(np.mean(depth_std)), "rotation_angle_std_deg": float(angles.std()),
             "translation_std": float(translations.std(axis=0).mean())}
    if scores.depth:
        summary = scores.summary()
        stats["depth_spearman"] = summary["depth_spearman"]["model"]
        stats["relative_rotation_error_deg"] = summary["relative_rotation_error_deg"]["model"]
    embedder.train(was_training)
    return stats


@torch.no_grad()
def plot_alignment(embedder: Embedder, data: TrajectoryDataset, view_ids: Sequence[str], device: torch.device,
                   batch: int, path: str, max_pairs: int = 12) -> None:
    """Nearest-frame index vs frame index for the view pairs of the first trajectory of ``data``
    (``visualization.plots.alignment_plot``), written to the PNG ``path``."""
    from . import plots  # matplotlib loads only when a plot is drawn
    embedder.eval()
    z = embedder.video_embeddings(embed_trajectory(embedder, data[0], device, batch))
    pairs = list(itertools.combinations(range(len(z)), 2))[:max_pairs]
    nearest = {(view_ids[i], view_ids[j]): {"model": nearest_frames(z[i], z[j]).numpy()} for i, j in pairs}
    errors = {pair: {"model": alignment_error_of_matches(m["model"])} for pair, m in nearest.items()}
    plots.save_png(plots.alignment_plot(nearest, errors, f"test alignment, {data.trajectories[0].name}"), path)
