"""The First-Third Person View (FTPV) layout: its names (used by the reader here and by the
renderer), data sets, splits, views and frames.

    <data_root>/<folder>/<trajectory>/fpv/000000.jpg ...              first-person view
    <data_root>/<folder>/<trajectory>/tpv/view_0000/000000.jpg ...    third-person views
    <data_root>/<folder>/splits.json                                   optional: the trajectories of each split

Frames are JPEG files as in the release, or PNG files (``000000.png`` ...), one kind per view folder.

A trajectory's views are ordered first-person first, then ``view_0000``, ``view_0001``, ...
Every problem with the files is raised as :class:`runtime.UserError` naming the file or folder.
"""
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from threedtrl.runtime import UserError, load_plain_pickle, read_json

SPLITS = ("train", "val", "test")
# A data set folder holding this file takes its splits from it instead of the release's (its own sets
# have none): {"train": [trajectory folder names], "val": [...], "test": [...]}.
SPLIT_FILE = "splits.json"
FPV = "fpv"
TPV = "tpv"


def view_folder_names(views: Sequence[int]) -> List[str]:
    """Folder names of a trajectory's views, first-person first: ``fpv``, ``view_0000``, ..."""
    return [FPV] + [f"view_{v:04d}" for v in views]


def trajectory_name(index: int) -> str:
    """Folder name of trajectory ``index`` of the numbered data sets: ``tr_0007``."""
    return f"tr_{index:04d}"


def numbered_trajectories(dataset_dir: str) -> List[str]:
    """Names of the numbered trajectory folders in ``dataset_dir``, in order."""
    return sorted(d for d in os.listdir(dataset_dir)
                  if re.fullmatch(r"tr_\d{4,}", d) and os.path.isdir(os.path.join(dataset_dir, d)))


# The release's frames are JPEG files; PNG frames (lossless, as many renderers write them) read as well.
FRAME_EXTENSIONS = (".jpg", ".png")


def frame_name(t: int, ext: str = ".jpg") -> str:
    """File name of frame ``t``: ``000007.jpg`` (or with ``ext``, ``000007.png``)."""
    return f"{t:06d}{ext}"


def trajectory_view_dirs(traj_dir: str, views: Sequence[int]) -> List[str]:
    """Folders of a trajectory's first-person view and of its third-person ``views`` (indices)."""
    first, *third = view_folder_names(views)
    return [os.path.join(traj_dir, first)] + [os.path.join(traj_dir, TPV, name) for name in third]


@dataclass(frozen=True)
class DatasetSpec:
    """One FTPV data set: its folder, the sampling window, the trajectory ranges per split
    (``None``: Pouring's pickles) and the number of third-person views the release reads (its
    ``max_views``: a trajectory's views beyond it are not read)."""
    folder: str
    window: int
    ranges: Optional[Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]]
    views: int


DATASETS: Dict[str, DatasetSpec] = {
    "pouring": DatasetSpec("pouring", 3, None, 1),
    "panda": DatasetSpec("Pandav1_Train_Frame", 3, ((0, 10), (10, 15), (15, 20)), 9),
    "mc": DatasetSpec("MineRLReachGoalGroundStatic-v0_Frame", 3, ((0, 4), (4, 6), (6, 8)), 8),
    "can": DatasetSpec("can_mh", 2, ((0, 200), (200, 250), (250, 300)), 4),
    "lift": DatasetSpec("lift_mh", 2, ((0, 200), (200, 250), (250, 300)), 4),
}
POURING_VAL_TRAJECTORIES = 10
# How frames are resized to the model's size: "pil" as the release does (PIL bicubic, antialiased when
# shrinking), "opencv" (OpenCV bicubic, not antialiased) as this project did before.
FRAME_RESIZE = ("pil", "opencv")


def resolve_dataset(name: str) -> Tuple[str, DatasetSpec]:
    """The data set that ``--data NAME`` selects, matched as the release does: a name containing
    ``panda`` (e.g. ``Pandav1_Train_Frame``) or ``mine`` (the MineRL folder) selects those sets;
    one containing ``can_mh``, ``lift_mh`` or ``pouring`` selects that set, read from the folder of
    that very name. This project's short names (``panda``, ``mc``, ``can``, ``lift``, ``pouring``)
    keep their folders. Returns the set's short name and its spec (with the folder to read)."""
    if name in DATASETS:
        return name, DATASETS[name]
    lowered = name.lower()
    for needle, key, own_folder in (("panda", "panda", False), ("mine", "mc", False), ("lift_mh", "lift", True),
                                    ("can_mh", "can", True), ("pouring", "pouring", True)):
        if needle in lowered:
            spec = DATASETS[key]
            return key, DatasetSpec(name, spec.window, spec.ranges, spec.views) if own_folder else spec
    raise UserError(f"unknown data set {name!r}: use panda, mc, can, lift or pouring, or a name containing "
                    f"panda, mine, can_mh, lift_mh or pouring (the release's names)")


@dataclass(frozen=True)
class Trajectory:
    """One trajectory on disk: its folder, selected view folders (first-person first), length and the
    extension of each view's frames (``.jpg`` or ``.png``)."""
    name: str
    path: str
    view_dirs: Tuple[str, ...]
    num_frames: int
    frame_exts: Tuple[str, ...]

    def frame_path(self, view: int, t: int) -> str:
        return os.path.join(self.view_dirs[view], frame_name(t, self.frame_exts[view]))


# ----------------------------------------------------------------------------- splits and views

def _pouring_names(dataset_dir: str, pickle_name: str) -> List[str]:
    path = os.path.join(dataset_dir, pickle_name)
    if not os.path.isfile(path):
        raise UserError(f"missing split file: {path}")
    records = load_plain_pickle(path)
    try:
        names = [r["name"] for r in records]
    except (TypeError, KeyError, IndexError) as err:  # a foreign pickle: report it as bad input
        raise UserError(f"cannot read split file {path}: {type(err).__name__}: {err}") from None
    if not all(isinstance(name, str) for name in names):
        raise UserError(f"split file {path}: every record's 'name' must be a string (the trajectory's "
                        f"folder, then '_real_' and anything)")
    return list(dict.fromkeys(name.split("_real_")[0] for name in names))


def read_split_file(dataset_dir: str) -> Optional[Dict[str, List[str]]]:
    """The trajectory names per split that ``dataset_dir/splits.json`` lists, or None without the file.
    Each split must be a list of folder names of that data set, and no name may be in two splits."""
    path = os.path.join(dataset_dir, SPLIT_FILE)
    if not os.path.isfile(path):
        return None
    listed = read_json(path)
    if not isinstance(listed, dict) or sorted(listed) != sorted(SPLITS):
        raise UserError(f"{path} must be a JSON object with exactly the keys train, val and test")
    seen: Dict[str, str] = {}
    for split in SPLITS:
        names = listed[split]
        if not isinstance(names, list):
            raise UserError(f"{path}: {split} must be a list of trajectory folder names")
        for name in names:
            if not isinstance(name, str) or name in ("", ".", "..") or os.sep in name or "/" in name:
                raise UserError(f"{path}: {split} lists {name!r}, which is not a folder name of the data set")
            if name in seen:
                raise UserError(f"{path}: {name} is in both {seen[name]} and {split}")
            seen[name] = split
    return {split: list(listed[split]) for split in SPLITS}


def split_names(dataset: str, dataset_dir: str, split: str, train_videos: int = -1,
                release_pouring_val: bool = False) -> List[str]:
    """Trajectory folder names of ``split``; ``train_videos > 0`` keeps the first n training videos.

    The data set folder's ``splits.json`` (:data:`SPLIT_FILE`), where there is one, names them;
    otherwise the release's splits do. Pouring validates on the last 10 trajectories of ``train.pkl``,
    which training leaves out. The release validated on the 10 before them (it took them after
    dropping the last 10), which it also trained on: ``release_pouring_val`` does that, to reproduce
    its numbers."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    spec = resolve_dataset(dataset)[1]
    listed = read_split_file(dataset_dir)
    if listed is not None:
        if release_pouring_val:
            raise UserError(f"--release_pouring_val picks Pouring's validation videos from train.pkl, but "
                            f"{os.path.join(dataset_dir, SPLIT_FILE)} names the splits")
        names = listed[split]
    elif spec.ranges is None:
        listed = _pouring_names(dataset_dir, "train.pkl")
        held = POURING_VAL_TRAJECTORIES
        needed = held * (2 if release_pouring_val else 1)
        if len(listed) <= needed:
            raise UserError(f"{os.path.join(dataset_dir, 'train.pkl')} lists {len(listed)} trajectories; "
                            f"more than {needed} are needed (the last ones are the validation set)")
        train = listed[:-held]
        val = train[-held:] if release_pouring_val else listed[-held:]
        names = _pouring_names(dataset_dir, "val.pkl") if split == "test" else {"train": train, "val": val}[split]
    else:
        start, stop = spec.ranges[SPLITS.index(split)]
        names = [trajectory_name(i) for i in range(start, stop)]
    if split == "train" and train_videos > 0:
        names = names[:train_videos]
    return names


def count_views(dataset_dir: str, first_trajectory: str) -> int:
    """Number of third-person views, read from the first trajectory (``view_0000`` .. contiguous)."""
    tpv = os.path.join(dataset_dir, first_trajectory, TPV)
    if not os.path.isdir(tpv):
        raise UserError(f"missing folder: {tpv}")
    present = sorted(d for d in os.listdir(tpv) if d.startswith("view_"))
    expected = view_folder_names(range(len(present)))[1:]
    if present != expected:
        missing = sorted(set(expected) - set(present)) or [present[-1]]
        raise UserError(f"third-person views of {tpv} are not numbered view_0000..: check {missing[0]}")
    if not present:
        raise UserError(f"no third-person views in {tpv}")
    return len(present)


def views_to_read(dataset_dir: str, dataset: str, name: str) -> int:
    """Third-person views read from trajectory ``name``: those it has, at most the release's number
    for data set ``dataset`` (views beyond it are not read)."""
    return min(count_views(dataset_dir, name), resolve_dataset(dataset)[1].views)


def dataset_folder(data_root: str, dataset: str) -> str:
    """The folder of data set ``dataset`` (see :func:`resolve_dataset`) in ``data_root``; it must exist."""
    folder = os.path.join(data_root, resolve_dataset(dataset)[1].folder)
    if not os.path.isdir(folder):
        raise UserError(f"missing data set folder: {folder}")
    return folder


def count_dataset_views(data_root: str, dataset: str) -> int:
    """Number of third-person views of a data set that are read: those of its first training
    trajectory, at most the release's number for the set (the whole split is checked when it is opened)."""
    dataset_dir = dataset_folder(data_root, dataset)
    names = split_names(dataset, dataset_dir, "train")
    if not names:
        raise UserError(f"the train split of {dataset_dir} is empty")
    return views_to_read(dataset_dir, dataset, names[0])


def view_selection(num_views: int, train_views: int) -> Dict[str, List[int]]:
    """Third-person view indices per split. ``-1`` (seen): all views everywhere; ``k``: train and
    val on views ``0..k-1``, test on ``k..num_views-1`` (the unseen setting)."""
    every = list(range(num_views))
    if train_views == -1 or train_views >= num_views:  # the release: -1, or more views than there are
        return {"train": every, "val": every, "test": every}
    if train_views < 1:
        raise UserError(f"--train_views must be -1 (seen) or between 1 and {num_views - 1} "
                        f"for a data set with {num_views} third-person views, got {train_views}")
    return {"train": every[:train_views], "val": every[:train_views], "test": every[train_views:]}


# ----------------------------------------------------------------------------- trajectories

def _count_frames(view_dir: str) -> Tuple[int, str]:
    """Number of frames in ``view_dir`` and their extension: its JPEG frames, else its PNG frames."""
    if not os.path.isdir(view_dir):
        raise UserError(f"missing view folder: {view_dir}")
    names = os.listdir(view_dir)
    for ext in FRAME_EXTENSIONS:
        files = sorted(f for f in names if f.endswith(ext))
        if files:
            break
    else:
        raise UserError(f"no frames (000000.jpg.. or 000000.png..) in {view_dir}")
    for t, name in enumerate(files):
        if name != frame_name(t, ext):
            raise UserError(f"frames of {view_dir} are not numbered {frame_name(0, ext)}.. contiguously: "
                            f"expected {frame_name(t, ext)}, found {name}")
    return len(files), ext


def open_trajectory(dataset_dir: str, name: str, views: Sequence[int]) -> Trajectory:
    """Check a trajectory's selected views and return it; third-person ``views`` are indices."""
    path = os.path.join(dataset_dir, name)
    if not os.path.isdir(path):
        raise UserError(f"missing trajectory folder: {path}")
    view_dirs = trajectory_view_dirs(path, views)
    counts, exts = zip(*(_count_frames(d) for d in view_dirs))
    # The first-person view sets the length, as in the release: frames a third-person view has beyond
    # it are not read; a view with fewer frames is an error.
    for d, n in zip(view_dirs[1:], counts[1:]):
        if n < counts[0]:
            raise UserError(f"unequal frame counts: {d} has {n} frames, {view_dirs[0]} has {counts[0]}")
    return Trajectory(name, path, tuple(view_dirs), counts[0], exts)


def open_split(data_root: str, dataset: str, split: str, train_views: int = -1,
               train_videos: int = -1, release_pouring_val: bool = False) -> Tuple[List[Trajectory], List[int]]:
    """The trajectories of ``split`` with the views the setting selects, and those view indices."""
    dataset_dir = dataset_folder(data_root, dataset)
    names = split_names(dataset, dataset_dir, split, train_videos, release_pouring_val)
    if not names:
        raise UserError(f"the {split} split of {dataset_dir} is empty")
    first = os.path.join(dataset_dir, names[0])
    if not os.path.isdir(first):
        raise UserError(f"missing trajectory folder: {first}")
    num_views = views_to_read(dataset_dir, dataset, names[0])
    for name in names[1:]:
        if os.path.isdir(os.path.join(dataset_dir, name)) and count_views(dataset_dir, name) < num_views:
            raise UserError(f"{os.path.join(dataset_dir, name, TPV)} does not have the {num_views} views "
                            f"of {os.path.join(first, TPV)}")
    views = view_selection(num_views, train_views)[split]
    return [open_trajectory(dataset_dir, name, views) for name in names], views


# ----------------------------------------------------------------------------- decoding

def read_frame(path: str, size: int, resize: str = "pil") -> np.ndarray:
    """``(3, size, size)`` uint8 RGB frame, resized with bicubic interpolation by PIL (as the release
    does) or OpenCV (``resize``, one of :data:`FRAME_RESIZE`)."""
    data = np.fromfile(path, dtype=np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise UserError(f"missing frame: {path}")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UserError(f"cannot decode image: {path}")
    image = np.ascontiguousarray(image[:, :, ::-1])
    if image.shape[:2] != (size, size):
        if resize == "pil":
            image = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
        elif resize == "opencv":
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
        else:
            raise ValueError(f"resize must be one of {FRAME_RESIZE}, got {resize!r}")
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def read_frames(paths: Sequence[str], size: int, threads: int = 1, resize: str = "pil") -> np.ndarray:
    """``(len(paths), 3, size, size)`` uint8; decoding runs on ``threads`` threads (OpenCV and PIL
    release the GIL)."""
    if threads <= 1 or len(paths) < 8:
        return np.stack([read_frame(p, size, resize) for p in paths])
    with ThreadPoolExecutor(threads) as pool:
        return np.stack(list(pool.map(lambda p: read_frame(p, size, resize), paths)))
