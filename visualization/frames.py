"""Inputs of the visualisation: an FTPV trajectory (all frames of some views) or a list of images.

A :class:`Source` is checked when opened (folders, views, frame counts) and decoded later, at
each size a model or a figure needs, into uint8 ``(V, T, 3, S, S)`` arrays: first-person view
first for a trajectory; still images are ``V`` views of one instant (``T = 1``).
"""
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from data_pipeline.ftpv import FPV, count_views, open_trajectory, read_frame
from threedtrl.runtime import UserError


@dataclass(frozen=True)
class Source:
    """Frame files ``paths[view][time]`` and the names of the views."""
    names: List[str]
    paths: List[List[str]]

    @property
    def length(self) -> int:
        return len(self.paths[0])

    def read(self, size: int) -> np.ndarray:
        """uint8 ``(V, T, 3, size, size)``, resized with bicubic interpolation."""
        return np.stack([np.stack([read_frame(p, size) for p in view]) for view in self.paths])


def open_trajectory_source(path: str, views: Optional[Sequence[int]], max_views: int) -> Source:
    """The first-person view and third-person ``views`` (default: the first ``max_views``) of a trajectory."""
    path = os.path.normpath(path)
    if not os.path.isdir(path):
        raise UserError(f"missing trajectory folder: {path}")
    dataset_dir, name = os.path.dirname(path), os.path.basename(path)
    available = count_views(dataset_dir, name)
    views = list(range(min(max_views, available))) if views is None else list(views)
    for v in views:
        if not 0 <= v < available:
            raise UserError(f"--views: {path} has third-person views 0..{available - 1}, not {v}")
    traj = open_trajectory(dataset_dir, name, views)
    paths = [[traj.frame_path(k, t) for t in range(traj.num_frames)] for k in range(len(traj.view_dirs))]
    return Source([FPV] + [f"view_{v}" for v in views], paths)


def open_images_source(paths: Sequence[str]) -> Source:
    """Still images as views of one instant, named after their files."""
    for p in paths:
        if not os.path.isfile(p):
            raise UserError(f"missing image: {p}")
    return Source([os.path.splitext(os.path.basename(p))[0] for p in paths], [[p] for p in paths])
