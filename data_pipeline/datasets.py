"""Datasets for multi-view video alignment: whole trajectories, time-contrastive triplets and
time-aligned clips of several views (for the multi-view n-pairs loss).

Frames are decoded and resized once into a uint8 cache (shared memory, so DataLoader workers
read it without copies); ``cache=False`` re-reads the JPEG files on every access instead.
Model inputs are made on the device: ``normalize(batch)`` turns uint8 into ImageNet-normalised floats.
"""
import itertools
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from threedtrl.runtime import UserError

from .ftpv import Trajectory, read_frame, read_frames

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` -> float ``(..., 3, H, W)`` scaled to [0, 1] and normalised."""
    shape = (3, 1, 1)
    mean_t = torch.tensor(mean, device=images.device).view(shape) * 255.0
    std_t = torch.tensor(std, device=images.device).view(shape) * 255.0
    return (images.float() - mean_t) / std_t


def _shared(frames: torch.Tensor) -> torch.Tensor:
    try:
        return frames.share_memory_()
    except RuntimeError as err:  # /dev/shm too small (containers often give it 64 MB)
        raise UserError(f"cannot keep the decoded frames in shared memory ({str(err).splitlines()[0]}): "
                        f"give /dev/shm more room, or use --num_workers 0") from None


class TrajectoryDataset(Dataset):
    """One item per trajectory: uint8 ``(V, T, 3, H, W)``, first-person view first.

    Args:
        trajectories: opened trajectories (``data_pipeline.open_split``), all with the same views.
        img_size: side of the square frames the model sees.
        cache: decode every frame once up front and keep it in memory.
        threads: decoding threads while filling the cache.
        resize: how frames of another size are resized (``data_pipeline.ftpv.FRAME_RESIZE``).
        shared: keep the cache in shared memory, for DataLoader workers (``/dev/shm`` must hold it).
    """

    def __init__(self, trajectories: Sequence[Trajectory], img_size: int, cache: bool = True,
                 threads: int = 2, progress: bool = True, desc: str = "decode", resize: str = "pil",
                 shared: bool = True):
        self.trajectories = list(trajectories)
        self.img_size = img_size
        self.resize = resize
        self.num_views = len(self.trajectories[0].view_dirs)
        self._cache: List[torch.Tensor] = []
        if cache:
            for traj in tqdm(self.trajectories, desc=desc, unit="traj", disable=not progress, dynamic_ncols=True):
                frames = self._read(traj, range(self.num_views), range(traj.num_frames), threads)
                self._cache.append(_shared(frames) if shared else frames)

    def _read(self, traj: Trajectory, views: Sequence[int], times: Sequence[int], threads: int = 1) -> torch.Tensor:
        paths = [traj.frame_path(v, t) for v in views for t in times]
        frames = read_frames(paths, self.img_size, threads, self.resize)
        return torch.from_numpy(frames).view(len(views), len(times), 3, self.img_size, self.img_size)

    def __len__(self) -> int:
        return len(self.trajectories)

    def num_frames(self, index: int) -> int:
        return self.trajectories[index].num_frames

    def frames(self, index: int, views: Sequence[int], times: Sequence[int]) -> torch.Tensor:
        """uint8 ``(len(views), len(times), 3, H, W)`` of trajectory ``index``."""
        if self._cache:
            return self._cache[index][list(views)][:, list(times)]
        if len(views) * len(times) == 1:
            frame = read_frame(self.trajectories[index].frame_path(views[0], times[0]), self.img_size, self.resize)
            return torch.from_numpy(frame)[None, None]
        return self._read(self.trajectories[index], views, times)

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._cache:
            return self._cache[index]
        return self._read(self.trajectories[index], range(self.num_views), range(self.num_frames(index)))


def sample_positive_negative(anchor: int, length: int, window: int, rng: np.random.Generator) -> Tuple[int, int]:
    """A positive within ``window`` frames of ``anchor`` (anchor excluded) and a negative farther away."""
    positives = [t for t in range(max(0, anchor - window), min(length, anchor + window + 1)) if t != anchor]
    negatives = [t for t in range(length) if abs(t - anchor) > window]
    return int(rng.choice(positives)), int(rng.choice(negatives))


class TripletDataset(Dataset):
    """Every unordered view pair ``(i, j)`` x every anchor frame of every trajectory.

    An item is ``(frames, times, views)``: uint8 ``frames (2, 3, 3, H, W)`` = (view i, view j) x
    (anchor, positive, negative) taken at the same ``times (3,)`` in both ``views (2,)``.
    Positives and negatives are re-drawn every epoch (``set_epoch``), reproducibly from the seed.
    """

    def __init__(self, trajectories: TrajectoryDataset, window: int, seed: int = 42):
        self.trajectories = trajectories
        self.window = window
        self.seed = seed
        self.epoch = 0
        for traj in trajectories.trajectories:
            if traj.num_frames < 2 * window + 2:
                raise UserError(f"{traj.path} has {traj.num_frames} frames; a window of {window} needs at least "
                                f"{2 * window + 2} so that every anchor has a positive and a negative")
        pairs = list(itertools.combinations(range(trajectories.num_views), 2))
        self.index = np.array([(k, i, j, a) for k in range(len(trajectories)) for i, j in pairs
                               for a in range(trajectories.num_frames(k))], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def times(self, item: int) -> Tuple[int, int, int]:
        """``(anchor, positive, negative)`` frame indices of ``item`` in the current epoch."""
        k, _, _, anchor = self.index[item]
        rng = np.random.default_rng([self.seed, self.epoch, item])
        positive, negative = sample_positive_negative(int(anchor), self.trajectories.num_frames(int(k)),
                                                      self.window, rng)
        return int(anchor), positive, negative

    def __getitem__(self, item: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, i, j, _ = (int(v) for v in self.index[item])
        times = self.times(item)
        frames = self.trajectories.frames(k, (i, j), times)
        return frames, torch.tensor(times), torch.tensor((i, j))


VIEW_DISTORTION = 0.3   # --augment_views: corners move inwards by up to this share of the half side


def augment_view(frames: torch.Tensor, rng: np.random.Generator, distortion: float = VIEW_DISTORTION
                 ) -> torch.Tensor:
    """One random change of viewpoint for all the frames of one view of a clip, ``(L, 3, H, W)`` uint8:
    a perspective warp (the corners of the image move inwards, as in the classification's viewpoint
    perturbation: a camera turned and moved closer) and, with probability 1/2, a mirror image."""
    import cv2

    from threedtrl.classification.data import perspective_corners

    height, width = frames.shape[-2:]
    source = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(source, perspective_corners(width, height, rng, distortion))
    mirror = rng.random() < 0.5
    out = []
    for frame in frames.permute(0, 2, 3, 1).numpy():
        warped = cv2.warpPerspective(frame, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
        out.append(warped[:, ::-1] if mirror else warped)
    return torch.from_numpy(np.ascontiguousarray(np.stack(out))).permute(0, 3, 1, 2)


class ClipDataset(Dataset):
    """Time-aligned clips of several views: one item per unordered view pair ``(i, j)`` of every
    trajectory, holding views ``i`` and ``j`` and, when ``views_per_clip`` asks for more, other views of
    the same trajectory drawn at random (0: every view).

    An item is ``(frames, times, views)``: uint8 ``frames (K, L, 3, H, W)`` = K views x the same ``L``
    sorted ``times (L,)``, and the view indices ``views (K,)`` (i and j first). Clips shorter than
    the trajectory and the extra views are drawn anew every epoch (``set_epoch``) from the seed.

    Args:
        clip_frames: frames per clip; 0: the shortest trajectory's length (more than that is an error).
        views_per_clip: K, at least 2; 0 or more than the trajectories have: every view.
        augment: every view of an item gets a random change of viewpoint of its own (:func:`augment_view`),
            drawn from the seed, the epoch and the item.
        distortion: the largest inward move of the warp's corners, as a share of half the side.
        targets: ``targets(trajectory, views, times)`` -> a dict of arrays about those frames (the
            oracle's ground truth, :class:`~data_pipeline.ground_truth.TokenTargets`), added to the item
            as a fourth element.
    """

    def __init__(self, trajectories: TrajectoryDataset, clip_frames: int = 0, views_per_clip: int = 2,
                 seed: int = 42, augment: bool = False, distortion: float = VIEW_DISTORTION,
                 targets: Optional[Callable] = None):
        self.trajectories = trajectories
        lengths = [trajectories.num_frames(k) for k in range(len(trajectories))]
        shortest = min(lengths)
        if clip_frames > shortest:
            name = trajectories.trajectories[lengths.index(shortest)].name
            raise UserError(f"--clip_frames {clip_frames} is longer than training trajectory {name} ({shortest} frames): "
                            f"give at most {shortest}, or 0 for the shortest length")
        self.clip_frames = clip_frames if clip_frames > 0 else shortest
        if self.clip_frames < 2:
            raise UserError(f"clips need at least 2 frames; the shortest trajectory has {shortest}")
        num_views = trajectories.num_views
        self.views_per_clip = min(views_per_clip, num_views) if views_per_clip > 0 else num_views
        if self.views_per_clip < 2:
            raise UserError(f"clips need at least 2 views, got {views_per_clip}")
        self.seed = seed
        self.augment, self.distortion, self.targets = augment, distortion, targets
        self.epoch = 0
        pairs = list(itertools.combinations(range(num_views), 2))
        self.index = np.array([(k, i, j) for k in range(len(trajectories)) for i, j in pairs], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def draw(self, item: int) -> Tuple[List[int], List[int]]:
        """The clip's view indices and sorted frame indices of ``item`` in the current epoch."""
        k, i, j = (int(v) for v in self.index[item])
        rng = np.random.default_rng([self.seed, self.epoch, item])
        others = [v for v in range(self.trajectories.num_views) if v not in (i, j)]
        views = [i, j] + sorted(int(v) for v in rng.choice(others, self.views_per_clip - 2, replace=False))
        length = self.trajectories.num_frames(k)
        if length == self.clip_frames:
            return views, list(range(length))
        return views, sorted(int(t) for t in rng.choice(length, self.clip_frames, replace=False))

    def __getitem__(self, item: int) -> tuple:
        views, times = self.draw(item)
        trajectory = int(self.index[item][0])
        frames = self.trajectories.frames(trajectory, views, times)
        if self.augment:
            frames = torch.stack([augment_view(f, np.random.default_rng([self.seed, self.epoch, item, 2, k]),
                                               self.distortion) for k, f in enumerate(frames)])
        if self.targets is None:
            return frames, torch.tensor(times), torch.tensor(views)
        targets = {k: torch.from_numpy(v) for k, v in self.targets(trajectory, views, times).items()}
        return frames, torch.tensor(times), torch.tensor(views), targets
