"""Scene families: FTPV renders of every family, their ground truth and their cameras."""
import os

import numpy as np
import pytest

from threedtrl import simulation
from data_pipeline import TrajectoryDataset, open_split
from data_pipeline.ground_truth import load_ground_truth
from data_pipeline.render_ftpv import GROUND_TRUTH, Preset, random_cameras, render_dataset

TINY = Preset("Pandav1_Train_Frame", trajectories=20, views=3, frames=6, size=32)  # the Pick split: 10/5/5


@pytest.fixture(scope="module", params=sorted(simulation.FAMILIES))
def family_root(request, tmp_path_factory):
    out = str(tmp_path_factory.mktemp(f"family_{request.param}"))
    preset = Preset(**{**TINY.__dict__, "family": request.param, "random_cameras": request.param == "shapes"})
    render_dataset(out, preset, seed=4, workers=1, progress=False)
    return request.param, out


def _truth(root, index):
    names = ["fpv"] + [f"view_{v:04d}" for v in range(TINY.views)]
    return load_ground_truth(os.path.join(root, TINY.folder, f"tr_{index:04d}"), names)


def test_family_renders_read_as_an_ftpv_split(family_root):
    family, root = family_root
    for name in ("train", "val", "test"):
        trajectories, views = open_split(root, "panda", name)
        assert trajectories and views == list(range(TINY.views))  # third-person views; the first-person view too
    frames = TrajectoryDataset(trajectories, img_size=24, progress=False)[0]
    assert frames.shape == (1 + TINY.views, TINY.frames, 3, 24, 24)
    with np.load(os.path.join(root, TINY.folder, "tr_0000", GROUND_TRUTH)) as truth:
        assert truth["state"].shape == (TINY.frames, simulation.FAMILIES[family].STATE_SIZE)
        assert truth["depth_mm"].shape == (1 + TINY.views, TINY.frames, TINY.size, TINY.size)


def test_family_ground_truth_puts_the_floor_at_z_zero(family_root):
    """Every third-person pixel with a depth, lifted with the stored intrinsics and pose, lies on or
    above the floor, and the floor is where most of them land: the ground truth's conventions hold."""
    _, root = family_root
    truth = _truth(root, 0)
    for view in range(1, 1 + TINY.views):
        depth = truth["depth"][view, 0]
        rows, cols = np.nonzero(np.isfinite(depth))
        pixels = np.stack([cols + 0.5, rows + 0.5, np.ones(len(cols))])
        camera = np.linalg.inv(truth["intrinsics"]) @ pixels * depth[rows, cols]
        inverse = np.linalg.inv(truth["world_to_camera"][view, 0])
        height = (inverse[:3, :3] @ camera + inverse[:3, 3:])[2]
        assert height.min() > -0.01 and (np.abs(height) < 0.01).mean() > 0.3, (view, height.min())


def test_family_scenes_move_in_every_view(family_root):
    """The first and last frames differ in every view (what time-contrastive alignment needs)."""
    _, root = family_root
    truth = _truth(root, 1)
    for view in range(1 + TINY.views):
        depth = np.nan_to_num(truth["depth"][view], posinf=0.0)
        assert np.abs(depth[0] - depth[-1]).mean() > 1e-3, view


def test_held_out_cameras_are_not_the_pretraining_ones():
    """Some of each held-out family's fixed cameras lie outside the pretraining cameras' elevations."""
    drawn = random_cameras(np.random.default_rng(0), 1000)
    low, high = min(p for _, p, _ in drawn), max(p for _, p, _ in drawn)
    for family in simulation.HELD_OUT.values():
        pitches = [p for _, p, _ in simulation.family_cameras(family, 9)]
        assert sum(not low <= p <= high for p in pitches) >= 3
    assert not set(simulation.HELD_OUT) & set(simulation.PRETRAINING)
