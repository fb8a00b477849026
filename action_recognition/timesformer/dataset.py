"""Video clips from CSV lists (``path label`` per line), decoded with OpenCV.

Temporal sampling (``DATA.TEMPORAL_SAMPLING``): ``slowfast``, the release's (SlowFast's), takes
``NUM_FRAMES`` indices evenly spread (``linspace``, truncated) over a span of
``SAMPLING_RATE * NUM_FRAMES`` frames counted at ``TARGET_FPS`` and rescaled to the video's frame
rate, from a random start in training and from ``i / n`` of the slack for test clip ``i`` of ``n``;
``stride`` takes indices ``SAMPLING_RATE`` apart, test clips centred in ``n`` equal parts. Indices
past the end of a short video are clamped to its last frame.
Training: that clip, short side scaled to a random size in ``TRAIN_JITTER_SCALES``, a random
``TRAIN_CROP_SIZE`` square crop, a random horizontal flip. Validation: the same random sampling and
augmentation (``DATA.VAL_AS_TRAIN``, as the release) or the centre clip and crop. Test:
``NUM_ENSEMBLE_VIEWS`` clips x ``NUM_SPATIAL_CROPS`` crops (3 = both ends and the centre of the long
side); the scores of one video's ``views`` are combined by the caller (see ``video_index``).
Spatial sampling (``DATA.SPATIAL_SAMPLING``): ``slowfast``, the release's, scales and crops the
normalised float frames with SlowFast's arithmetic (:func:`slowfast_scale`, :func:`slowfast_random_crop`,
:func:`slowfast_uniform_crop`); ``opencv`` resizes the uint8 frames with OpenCV first.
"""
import math
import os
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from threedtrl.runtime import UserError

SPLIT_FILES = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
# Appended to the random-draw seed (seed, epoch, item), so that validation's random clips differ from
# training's while training keeps its earlier draws.
VAL_SEED = {"train": (), "val": (1,)}


def find_video(video: str, prefix: str, search_from: Sequence[str] = ()) -> str:
    """A list's video path: absolute, else under ``prefix``; a relative path not found there is also
    looked for from the folders ``search_from`` (the release read it from where it was started)."""
    if os.path.isabs(video):
        return video
    candidates = [os.path.join(prefix, video)] + [os.path.join(folder, video) for folder in search_from]
    return next((c for c in candidates if os.path.isfile(c)), candidates[0])


def read_video_list(path: str, prefix: str, num_classes: int, separator: str = " ",
                    search_from: Sequence[str] = ()) -> List[Tuple[str, int]]:
    """``[(video path, label)]`` from a list file; every video must exist (see :func:`find_video`) and
    every label be in range."""
    if not os.path.isfile(path):
        raise UserError(f"video list not found: {path}")
    items = []
    with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not part of the first path
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(separator, 1) if separator != " " else line.rsplit(None, 1)
            if len(parts) != 2:
                raise UserError(f"{path}:{line_no}: expected a video path and a label separated by "
                                f"{separator!r} (DATA.PATH_LABEL_SEPARATOR), got {line!r}")
            video, label = parts[0].strip(), parts[1]
            try:
                label = int(label)
            except ValueError:
                raise UserError(f"{path}:{line_no}: label {label!r} is not an integer") from None
            if not 0 <= label < num_classes:
                raise UserError(f"{path}:{line_no}: label {label} out of range [0, {num_classes - 1}] "
                                f"(MODEL.NUM_CLASSES {num_classes})")
            video = find_video(video, prefix, search_from)
            if not os.path.isfile(video):
                raise UserError(f"{path}:{line_no}: video not found: {video}")
            items.append((video, label))
    if not items:
        raise UserError(f"video list {path} is empty")
    return items


# A wanted frame further ahead than this is reached by seeking, a nearer one by decoding the frames
# in between: one seek (to the key frame before, then decoding up to the frame) cost about as much as
# decoding 20 frames in order, measured on 320x240 MPEG-4 videos.
SEEK_AHEAD = 24


class VideoReader:
    """One opened video: its frame count and the frames at chosen indices (a context manager).

    A wanted frame more than ``seek_ahead`` frames ahead is reached by seeking (the decoder
    starts at the key frame before it), a nearer one by decoding the frames in between, so a
    clip late in a long video does not decode everything before it.
    """

    def __init__(self, path: str, seek_ahead: int = SEEK_AHEAD):
        self.path, self.seek_ahead = path, seek_ahead
        self.capture = cv2.VideoCapture(path)
        if not self.capture.isOpened():
            self.capture.release()
            raise UserError(f"cannot decode video: {path}")
        self.position = 0
        self.length = self._count_frames()
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.capture.release()

    def _count_frames(self) -> int:
        """The container's frame count, or counted by decoding when it reports none."""
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0:
            return count
        count = 0
        while self.capture.grab():
            count += 1
        self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return count

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """``(len(indices), H, W, 3)`` uint8 RGB frames at ``indices`` (repeats allowed).

        Indices past the last decodable frame are clamped to it (containers sometimes
        over-report their length)."""
        decoded = {}
        for index in sorted(set(int(i) for i in indices)):
            if index < self.position or index - self.position > self.seek_ahead:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                self.position = index
            while self.position < index and self.capture.grab():
                self.position += 1
            ok, frame = self.capture.read() if self.position == index else (False, None)
            if not ok:
                break
            decoded[index] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            self.position += 1
        if not decoded:
            raise UserError(f"cannot decode video: {self.path}")
        last = max(decoded)
        return np.stack([decoded[min(int(i), last)] for i in indices])


def check_readable(videos: Sequence[Tuple[str, int]]) -> None:
    """Open every video and decode its first frame; a :class:`UserError` names the first that fails."""
    for path, _ in videos:
        with VideoReader(path) as video:
            video.frames([0])


def decode_frames(path: str, indices: Sequence[int]) -> np.ndarray:
    """``(len(indices), H, W, 3)`` uint8 RGB frames of the video at ``path`` (see :class:`VideoReader`)."""
    with VideoReader(path) as video:
        return video.frames(indices)


def clip_indices(num_video_frames: int, num_frames: int, sampling_rate: int, start: int) -> np.ndarray:
    """``num_frames`` indices ``sampling_rate`` apart from ``start``, clamped to ``[0, L - 1]``."""
    indices = start + np.arange(num_frames) * sampling_rate
    return np.clip(indices, 0, max(num_video_frames - 1, 0))


def slowfast_clip_indices(num_video_frames: int, num_frames: int, sampling_rate: int, fps: float, target_fps: float,
                          clip: int, num_clips: int, rng: Optional[np.random.Generator]) -> np.ndarray:
    """SlowFast's sampling: ``num_frames`` indices spread evenly over ``sampling_rate * num_frames``
    frames at ``target_fps`` (in the video's frames: times ``fps / target_fps``), from a uniform
    random start (``rng``) or from ``clip / num_clips`` of the slack; clamped and truncated as
    ``torch.linspace(...).clamp(0, L - 1).long()``."""
    clip_size = sampling_rate * num_frames / target_fps * (fps if fps > 0 else target_fps)
    delta = max(num_video_frames - clip_size, 0.0)
    start = rng.uniform(0, delta) if rng is not None else delta * clip / num_clips
    index = np.linspace(start, start + clip_size - 1, num_frames)
    return np.clip(index, 0, max(num_video_frames - 1, 0)).astype(np.int64)


def clip_start(num_video_frames: int, span: int, view: int, num_views: int) -> int:
    """Start of temporal view ``view`` of ``num_views`` spread evenly over the video (centre for one)."""
    slack = max(num_video_frames - span, 0)
    return int(round(slack * (view + 0.5) / num_views))


def scale_short_side(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``(T, H, W, 3)`` frames so the short side is ``size`` (aspect kept)."""
    height, width = frames.shape[1:3]
    if min(height, width) == size:
        return frames
    if height < width:
        new_h, new_w = size, int(round(width * size / height))
    else:
        new_h, new_w = int(round(height * size / width)), size
    interpolation = cv2.INTER_AREA if size < min(height, width) else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (new_w, new_h), interpolation=interpolation) for f in frames])


def crop(frames: np.ndarray, size: int, top: int, left: int) -> np.ndarray:
    return frames[:, top:top + size, left:left + size]


def spatial_crop(frames: np.ndarray, size: int, index: int, num_crops: int) -> np.ndarray:
    """Centre crop (``num_crops`` 1), or crop ``index`` of 3 along the long side (0 start, 1 centre, 2 end)."""
    height, width = frames.shape[1:3]
    top, left = (height - size) // 2, (width - size) // 2
    if num_crops == 3 and index != 1:
        if height > width:
            top = 0 if index == 0 else height - size
        else:
            left = 0 if index == 0 else width - size
    return crop(frames, size, top, left)


def slowfast_scale(clip: torch.Tensor, size: int) -> torch.Tensor:
    """SlowFast's short-side scaling of a ``(3, T, H, W)`` float clip: the shorter side to ``size``, the
    longer one to ``floor(long * size / short)``, bilinear (``align_corners=False``, no antialiasing)."""
    height, width = clip.shape[-2:]
    if min(height, width) == size:
        return clip
    if width < height:
        new_size = (int(math.floor(height / width * size)), size)
    else:
        new_size = (size, int(math.floor(width / height * size)))
    return F.interpolate(clip, size=new_size, mode="bilinear", align_corners=False)


def slowfast_random_crop(clip: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """SlowFast's random ``size`` square crop: each offset drawn in ``[0, slack)`` (0 without slack)."""
    height, width = clip.shape[-2:]
    top = int(rng.integers(0, height - size)) if height > size else 0
    left = int(rng.integers(0, width - size)) if width > size else 0
    return clip[..., top:top + size, left:left + size]


def slowfast_uniform_crop(clip: torch.Tensor, size: int, index: int) -> torch.Tensor:
    """SlowFast's test crop ``index`` (0, 1, 2: start, centre, end of the longer side; a square frame's
    width); centred offsets are ``ceil(slack / 2)``."""
    height, width = clip.shape[-2:]
    top, left = math.ceil((height - size) / 2), math.ceil((width - size) / 2)
    if index != 1:
        if height > width:
            top = 0 if index == 0 else height - size
        else:
            left = 0 if index == 0 else width - size
    return clip[..., top:top + size, left:left + size]


def slowfast_train_crop(clip: torch.Tensor, jitter_scales: Sequence[int], size: int, flip: bool,
                        rng: np.random.Generator) -> torch.Tensor:
    """SlowFast's training augmentation of a normalised ``(3, T, H, W)`` clip: the shorter side to
    ``round(U(low, high))``, a random ``size`` crop, a horizontal flip with probability 0.5 (``flip``)."""
    low, high = jitter_scales
    clip = slowfast_random_crop(slowfast_scale(clip, int(round(rng.uniform(low, high)))), size, rng)
    return clip.flip(-1) if flip and rng.random() < 0.5 else clip


def slowfast_test_crop(clip: torch.Tensor, scale: int, size: int, index: int) -> torch.Tensor:
    """SlowFast's test view: the shorter side to ``scale``, then crop ``index`` of :func:`slowfast_uniform_crop`."""
    return slowfast_uniform_crop(slowfast_scale(clip, scale), size, index)


def to_tensor(frames: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> normalised float ``(3, T, H, W)``: ``(x / 255 - mean) / std``."""
    source = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)
    out = torch.empty(source.shape, dtype=torch.float32).copy_(source)
    scale = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1) * 255.0
    return out.sub_(torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1) * 255.0).div_(scale)


class VideoDataset(Dataset):
    """Clips of the videos listed in ``DATA.PATH_TO_DATA_DIR/<split>.csv``.

    An item is ``(clip (3, T, S, S), label, video index)``; in test mode there are
    ``NUM_ENSEMBLE_VIEWS * NUM_SPATIAL_CROPS`` items per video.
    """

    def __init__(self, cfg, split: str):
        if split not in SPLIT_FILES:
            raise ValueError(f"unknown split {split!r}")
        self.split = split
        self.data = cfg.DATA
        root = cfg.DATA.PATH_TO_DATA_DIR
        if not root or not os.path.isdir(root):
            raise UserError(f"DATA.PATH_TO_DATA_DIR is not a folder: {root!r}")
        prefix = cfg.DATA.PATH_PREFIX or root
        # Without PATH_PREFIX the release read relative paths from where it ran: the action_recognition
        # folder (script.sh runs there), or where script.sh was called from.
        search = () if cfg.DATA.PATH_PREFIX else (os.getcwd(), os.environ.get("SCRIPT_CALLER_DIR", os.getcwd()))
        self.videos = read_video_list(os.path.join(root, SPLIT_FILES[split]), prefix, cfg.MODEL.NUM_CLASSES,
                                      cfg.DATA.PATH_LABEL_SEPARATOR, search_from=search)
        self.labels = [label for _, label in self.videos]
        if split == "test":
            self.num_clips, self.num_crops = cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS
        else:
            self.num_clips, self.num_crops = 1, 1
        self.seed = cfg.RNG_SEED
        self.epoch = 0
        self.seek_ahead = SEEK_AHEAD
        self.random_clips = split == "train" or (split == "val" and cfg.DATA.VAL_AS_TRAIN)

    @property
    def views_per_video(self) -> int:
        return self.num_clips * self.num_crops

    def set_epoch(self, epoch: int) -> None:
        """Training augmentation depends on (seed, epoch, item) only, whatever the worker layout."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos) * self.views_per_video

    def __getitem__(self, index: int):
        video_index, view = divmod(index, self.views_per_video)
        path, label = self.videos[video_index]
        rng = np.random.default_rng([self.seed, self.epoch, index, *VAL_SEED[self.split]]) if self.random_clips else None
        with VideoReader(path, self.seek_ahead) as video:
            frames = video.frames(self._indices(video, view // self.num_crops, rng))
        d = self.data
        if d.SPATIAL_SAMPLING == "slowfast":
            clip = to_tensor(frames, d.MEAN, d.STD)
            if rng is not None:
                clip = slowfast_train_crop(clip, d.TRAIN_JITTER_SCALES, d.TRAIN_CROP_SIZE, d.RANDOM_FLIP, rng)
            elif self.num_crops > 1:
                clip = slowfast_test_crop(clip, d.TEST_CROP_SIZE, d.TEST_CROP_SIZE, view % self.num_crops)
            else:  # SlowFast's single test crop: the centre, from frames scaled to the smallest training scale
                clip = slowfast_test_crop(clip, d.TRAIN_JITTER_SCALES[0], d.TEST_CROP_SIZE, 1)
            return clip.contiguous(), label, video_index
        if rng is not None:
            frames = self._augment(frames, rng)
        else:
            frames = scale_short_side(frames, d.TEST_CROP_SIZE)
            frames = spatial_crop(frames, d.TEST_CROP_SIZE, view % self.num_crops, self.num_crops)
        return to_tensor(frames, d.MEAN, d.STD), label, video_index

    def _indices(self, video: "VideoReader", clip: int, rng: Optional[np.random.Generator]) -> np.ndarray:
        """The frame indices of temporal clip ``clip`` (random with ``rng``)."""
        d = self.data
        if d.TEMPORAL_SAMPLING == "slowfast":
            return slowfast_clip_indices(video.length, d.NUM_FRAMES, d.SAMPLING_RATE, video.fps, d.TARGET_FPS, clip,
                                         self.num_clips, rng)
        span = (d.NUM_FRAMES - 1) * d.SAMPLING_RATE + 1
        if rng is not None:
            start = int(rng.integers(0, max(video.length - span, 0) + 1))
        else:
            start = clip_start(video.length, span, clip, self.num_clips)
        return clip_indices(video.length, d.NUM_FRAMES, d.SAMPLING_RATE, start)

    def _augment(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        low, high = self.data.TRAIN_JITTER_SCALES
        frames = scale_short_side(frames, int(rng.integers(low, high + 1)))
        size = self.data.TRAIN_CROP_SIZE
        top = int(rng.integers(0, frames.shape[1] - size + 1))
        left = int(rng.integers(0, frames.shape[2] - size + 1))
        frames = crop(frames, size, top, left)
        if self.data.RANDOM_FLIP and rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        return frames
