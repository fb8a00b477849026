"""The release's data classes (``data_pipeline.trajectory_dataset``), for code written against them.

``TrajectoryDataset(dataset, trs, view_range)`` gives one FTPV trajectory per item as the release
loads it: float ``(1 + V, T, 3, 224, 224)``, PIL bicubic resize, ImageNet normalisation, first-person
view first; ``TripletDataset(data, window)`` gives the release's (view i, view j) triplets of one such
trajectory. The release read from its authors' data folder: here ``data_root`` (default
``data/ftpv``). This project's own datasets (frame cache, seeded draws) are in
:mod:`data_pipeline.datasets`.
"""
import os
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import normalize
from .ftpv import open_trajectory, read_frames

RELEASE_SIZE = 224


class TrajectoryDataset(Dataset):
    """Trajectories ``trs`` of data set folder ``dataset``, third-person views ``view_range``."""

    def __init__(self, dataset: Optional[str] = None, trs: Sequence[str] = (), view_range: Sequence[int] = (),
                 window: int = 3, config=None, aug: Optional[Callable] = None, data_root: str = "data/ftpv"):
        self.dataset, self.trs, self.view_range, self.window = dataset, list(trs), list(view_range), window
        self.config, self.aug, self.data_root = config, aug, data_root

    def load_data(self, tr: str) -> torch.Tensor:
        """``(1 + V, T, 3, 224, 224)`` normalised frames of trajectory ``tr``."""
        traj = open_trajectory(os.path.join(self.data_root, self.dataset), tr, self.view_range)
        paths = [traj.frame_path(v, t) for v in range(len(traj.view_dirs)) for t in range(traj.num_frames)]
        frames = torch.from_numpy(read_frames(paths, RELEASE_SIZE, resize="pil"))
        if self.aug is not None:
            frames = torch.stack([self.aug(f) for f in frames])
        return normalize(frames).view(len(traj.view_dirs), traj.num_frames, 3, RELEASE_SIZE, RELEASE_SIZE)

    def __getitem__(self, tr_index: int) -> torch.Tensor:
        return self.load_data(self.trs[tr_index])

    def __len__(self) -> int:
        return len(self.trs)


class TripletDataset(Dataset):
    """Item ``idx``: frames ``[anchor, positive(s), negative(s)]`` of views i and j of ``data``
    (``(V, T, C, H, W)``), anchor ``idx % T`` of view pair ``idx // T``; positives within ``window``
    frames of the anchor, negatives beyond it, drawn with NumPy's global generator as the release does."""

    def __init__(self, data: torch.Tensor, window: int = 3, n_pos: int = 1, n_neg: int = 1, device: str = "cpu"):
        self.data, self.window, self.n_pos, self.n_neg = data, window, n_pos, n_neg
        self.n_views, self.n_frames = data.size(0), data.size(1)
        self.view_pairs = [(i, j) for i in range(self.n_views) for j in range(i + 1, self.n_views)]
        self.max_len = len(self.view_pairs) * self.n_frames

    def __getitem__(self, idx: int):
        anchor, (i, j) = idx % self.n_frames, self.view_pairs[idx // self.n_frames]
        near = np.concatenate([np.arange(max(anchor - self.window, 0), anchor),
                               np.arange(anchor + 1, min(anchor + 1 + self.window, self.n_frames))])
        far = np.concatenate([np.arange(0, anchor - self.window), np.arange(anchor + 1 + self.window, self.n_frames)])
        indices = [anchor] + np.random.choice(near, self.n_pos, replace=False).tolist() \
            + np.random.choice(far, self.n_neg, replace=False).tolist()
        return self.data[i][indices], self.data[j][indices]

    def __len__(self) -> int:
        return self.max_len
