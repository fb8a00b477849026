"""The renderer's ground truth of an FTPV trajectory (``ground_truth.npz``): per-view cameras and depth,
and the per-token targets derived from them (what the geometry evaluation compares with and what
the oracle objective trains on)."""
import os
import warnings
from typing import Dict, Sequence, Tuple

import numpy as np

from threedtrl.runtime import UserError

from .render_ftpv import GROUND_TRUTH


def load_ground_truth(traj_path: str, view_names: Sequence[str]) -> Dict[str, np.ndarray]:
    """``world_to_camera (V, T, 4, 4)``, ``depth (V, T, S, S)`` in metres (nan: nothing) and
    ``intrinsics (3, 3)`` of the named views of a rendered trajectory."""
    path = os.path.join(traj_path, GROUND_TRUTH)
    if not os.path.isfile(path):
        raise UserError(f"no ground truth in {traj_path} (no {GROUND_TRUTH}: render the data with this "
                        f"project's renderer)")
    with np.load(path, allow_pickle=False) as data:
        names = [str(n) for n in data["view_names"]]
        missing = [n for n in view_names if n not in names]
        if missing:
            raise UserError(f"{path} has no ground truth for view {missing[0]}")
        index = [names.index(n) for n in view_names]
        depth = data["depth_mm"][index].astype(np.float64) / 1000.0
        return {"world_to_camera": data["world_to_camera"][index], "intrinsics": data["intrinsics"],
                "depth": np.where(depth > 0, depth, np.nan)}


def token_depth(depth: np.ndarray, grid_size: Tuple[int, int]) -> np.ndarray:
    """Mean true depth of each token's patch: ``(..., S, S)`` metres -> ``(..., h, w)`` (nan where
    the patch shows nothing)."""
    h, w = grid_size
    size = depth.shape[-1]
    if size % h or size % w:
        raise UserError(f"ground-truth depth of {size} px cannot be split into a {h}x{w} token grid")
    blocks = depth.reshape(*depth.shape[:-2], h, size // h, w, size // w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a patch of nothing but sky: nan, as documented
        return np.nanmean(blocks, axis=(-3, -1))


def cameras_from_world_to_camera(world_to_camera: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(..., 4, 4)`` world-to-camera -> world-to-camera rotation ``(..., 3, 3)`` and centre ``(..., 3)``."""
    rotation, translation = world_to_camera[..., :3, :3], world_to_camera[..., :3, 3]
    return rotation, -np.einsum("...ji,...j->...i", rotation, translation)


class TokenTargets:
    """What the oracle objective trains on, for the views of a set of trajectories: the true mean
    depth of each token's patch and the true world-to-camera rotation of every frame of every view.

    Args:
        trajectories: the :class:`~data_pipeline.ftpv.Trajectory` list of a data set (its views
            first-person first, as the frames are read).
        grid_size: ``(h, w)`` token grid of the model.
    """

    def __init__(self, trajectories: Sequence, grid_size: Tuple[int, int]):
        self.trajectories, self.grid_size = list(trajectories), tuple(grid_size)
        self._cache: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    def _load(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            traj = self.trajectories[index]
            truth = load_ground_truth(traj.path, [os.path.basename(d) for d in traj.view_dirs])
            depth = token_depth(truth["depth"], self.grid_size)                    # (V, T, h, w)
            rotation, _ = cameras_from_world_to_camera(truth["world_to_camera"])  # (V, T, 3, 3)
            self._cache[index] = (depth.reshape(*depth.shape[:2], -1).astype(np.float32), rotation.astype(np.float32))
        return self._cache[index]

    def __call__(self, index: int, views: Sequence[int], times: Sequence[int]) -> Dict[str, np.ndarray]:
        """``depth (K, L, N)`` (nan: the patch shows nothing) and ``rotation (K, L, 3, 3)`` of the
        given views at the given frames of trajectory ``index``."""
        depth, rotation = self._load(index)
        pick = np.ix_(list(views), list(times))
        return {"depth": depth[pick], "rotation": rotation[pick]}
