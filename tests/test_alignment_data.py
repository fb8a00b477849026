"""FTPV layout, splits, renderer and triplet sampling, on a tiny set rendered here."""
import itertools
import json
import os
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from data_pipeline import (DATASETS, TrajectoryDataset, TripletDataset, count_dataset_views, open_split,
                           resolve_dataset, split_names, view_selection)
from data_pipeline.render_ftpv import Preset, interpolate, render_dataset
from threedtrl.runtime import UserError, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = Preset("Pandav1_Train_Frame", trajectories=8, views=3, frames=8, size=32)
MC = DATASETS["mc"].folder


def _listing(folder):
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """8 trajectories x (fpv + 3 views) x 8 frames of 32 px, laid out as the Minecraft set (split 4/2/2)."""
    out = tmp_path_factory.mktemp("ftpv")
    render_dataset(str(out / "render"), TINY, seed=3, workers=1, progress=False)
    root = out / "root"
    root.mkdir()
    shutil.copytree(out / "render" / TINY.folder, root / MC)
    return out


@pytest.fixture()
def root(rendered, tmp_path):
    """A private copy of the rendered set to break."""
    shutil.copytree(rendered / "root", tmp_path / "root")
    return str(tmp_path / "root")


def test_render_layout(rendered):
    folder = rendered / "render" / TINY.folder
    files = _listing(str(folder))
    frames = [f"{t:06d}.jpg" for t in range(8)]
    for k in range(8):
        for view in ["fpv"] + [f"tpv/view_{v:04d}" for v in range(3)]:
            assert {f"tr_{k:04d}/{view}/{f}" for f in frames} <= files
        assert f"tr_{k:04d}/ground_truth.npz" in files
    assert len(files) == 8 * 4 * 8 + 8 + 1  # frames, one ground truth per trajectory, the render.json manifest


def test_render_is_deterministic_and_resumable(rendered, tmp_path):
    source = rendered / "render" / TINY.folder
    out = tmp_path / "again"
    shutil.copytree(source, out / TINY.folder)
    shutil.rmtree(out / TINY.folder / "tr_0005")
    os.remove(out / TINY.folder / "tr_0002" / "fpv" / "000003.jpg")
    kept = out / TINY.folder / "tr_0000" / "fpv" / "000000.jpg"
    before = os.stat(kept).st_mtime_ns
    render_dataset(str(out), TINY, seed=3, workers=1, progress=False)
    assert os.stat(kept).st_mtime_ns == before  # complete trajectories are kept
    for name in ("tr_0005", "tr_0002"):  # re-rendered ones come out byte-identical
        for rel in _listing(str(source / name)):
            assert (source / name / rel).read_bytes() == (out / TINY.folder / name / rel).read_bytes()


def test_render_refuses_other_settings(rendered, tmp_path):
    shutil.copytree(rendered / "render" / TINY.folder, tmp_path / TINY.folder)
    with pytest.raises(UserError, match="frames differ"):
        render_dataset(str(tmp_path), Preset(**{**TINY.__dict__, "frames": 9}), seed=3, progress=False)


def test_render_records_pacing_and_refuses_the_other_one(rendered, tmp_path):
    """Even pacing (the default) is in the manifest; a manifest without pacing (a folder rendered
    before the option) counts as eased: an even render refuses the folder, an eased one completes it."""
    manifest = json.loads((rendered / "render" / TINY.folder / "render.json").read_text())
    assert manifest["pacing"] == "even"
    shutil.copytree(rendered / "render" / TINY.folder, tmp_path / TINY.folder)
    del manifest["pacing"]
    (tmp_path / TINY.folder / "render.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"rendered with pacing eased, other settings than these \(pacing differs\)"):
        render_dataset(str(tmp_path), TINY, seed=3, progress=False)
    render_dataset(str(tmp_path), Preset(**{**TINY.__dict__, "pacing": "eased"}), seed=3, progress=False)
    assert json.loads((tmp_path / TINY.folder / "render.json").read_text())["pacing"] == "eased"


def _key_poses():
    """A reach (2 rad), a grasp (fingers alone, 1 cm) and a lift (1 rad), as the renderer's key poses."""
    q0, q1, q2 = np.zeros(7), np.r_[2.0, np.zeros(6)], np.r_[2.0, 1.0, np.zeros(5)]
    return [(q0, 0.04, False), (q1, 0.04, False), (q1, 0.03, True), (q2, 0.03, True)]


def _paced(pacing, frames):
    """``(frames, 8)`` joints and 10 x finger opening (the renderer's measure of motion) of ``_key_poses``."""
    return np.array([np.r_[joints, 10 * finger] for joints, finger, _ in interpolate(_key_poses(), frames, pacing)])


def test_even_pacing_moves_at_one_speed_and_eased_pacing_dwells_at_key_poses():
    for pacing in ("even", "eased"):
        poses = interpolate(_key_poses(), 32, pacing)
        np.testing.assert_allclose(poses[0][0], _key_poses()[0][0])
        np.testing.assert_allclose(poses[-1][0], _key_poses()[-1][0])
        assert not poses[0][2] and poses[-1][2]           # the cube is attached from the grasp on
    steps = {p: np.linalg.norm(np.diff(_paced(p, 32), axis=0), axis=1) for p in ("even", "eased")}
    # even: the 3.25 units of path (2.05 + 0.15 + 1.05) in 31 equal steps of time; within a segment
    # every step is the same, and no step is short (the grasp takes 1.4 steps instead of 10)
    within = steps["even"][[0, 1, 2, 17, 18, 22, 29, 30]]
    np.testing.assert_allclose(within[:5], 2.0 / 2.05 * 3.25 / 31, rtol=1e-6)
    np.testing.assert_allclose(within[5:], 1.0 / 1.05 * 3.25 / 31, rtol=1e-6)
    assert steps["even"].min() > 0.05
    # eased: every segment the same time, the arm at rest at every key pose: many near-repeats
    assert (steps["eased"] < 0.01).sum() >= 6 and steps["eased"].max() > 2 * steps["even"].max()
    with pytest.raises(ValueError, match="unknown pacing 'smooth'"):
        interpolate(_key_poses(), 32, "smooth")


def test_splits_of_every_dataset(tmp_path):
    assert split_names("panda", "", "train") == [f"tr_{i:04d}" for i in range(10)]
    assert split_names("panda", "", "test") == [f"tr_{i:04d}" for i in range(15, 20)]
    assert split_names("mc", "", "val") == ["tr_0004", "tr_0005"]
    for name in ("can", "lift"):
        assert len(split_names(name, "", "train")) == 200
        assert split_names(name, "", "val")[0] == "tr_0200"
        assert split_names(name, "", "test")[-1] == "tr_0299"
    assert split_names("can", "", "train", train_videos=5) == [f"tr_{i:04d}" for i in range(5)]
    train = [{"name": f"pour_{i:02d}_real_cam{c}"} for i in range(15) for c in range(2)]
    with open(tmp_path / "train.pkl", "wb") as f:
        pickle.dump(train, f)
    with open(tmp_path / "val.pkl", "wb") as f:
        pickle.dump([{"name": "pour_99_real_x"}], f)
    assert split_names("pouring", str(tmp_path), "train") == [f"pour_{i:02d}" for i in range(5)]
    assert split_names("pouring", str(tmp_path), "val") == [f"pour_{i:02d}" for i in range(5, 15)]
    assert split_names("pouring", str(tmp_path), "test") == ["pour_99"]
    assert split_names("pouring", str(tmp_path), "train", train_videos=2) == ["pour_00", "pour_01"]


def test_split_file_names_the_splits(root):
    folder = os.path.join(root, MC)
    listed = {"train": [f"tr_{i:04d}" for i in (5, 0, 1, 2, 3)], "val": ["tr_0004"], "test": ["tr_0006", "tr_0007"]}
    with open(os.path.join(folder, "splits.json"), "w") as f:
        json.dump(listed, f)
    for split in listed:
        trajectories, _ = open_split(root, "mc", split)
        assert [t.name for t in trajectories] == listed[split]
    assert split_names("mc", folder, "train", train_videos=2) == ["tr_0005", "tr_0000"]
    with pytest.raises(UserError, match="--release_pouring_val picks"):
        split_names("mc", folder, "val", release_pouring_val=True)


@pytest.mark.parametrize("content, message", [
    ('{"train": [], "val": []}', "exactly the keys train, val and test"),
    ('["tr_0000"]', "exactly the keys train, val and test"),
    ('{"train": "tr_0000", "val": [], "test": []}', "train must be a list"),
    ('{"train": ["../tr_0000"], "val": [], "test": []}', "lists '../tr_0000', which is not a folder name"),
    ('{"train": ["tr_0000"], "val": ["tr_0000"], "test": []}', "tr_0000 is in both train and val"),
    ('{"train": ', "is not valid JSON"),
    (b"\xff\xfe{", "is not valid JSON"),
])
def test_bad_split_file_is_one_line(tmp_path, content, message):
    (tmp_path / "splits.json").write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=re.escape(message)):
        split_names("panda", str(tmp_path), "train")


def test_render_extra_training_videos_keeps_the_other_splits(tmp_path):
    """--extra_train_videos renders trajectories after the preset's (which stay as they are) and adds
    them to the training split only."""
    base = Preset("Pandav1_Train_Frame", trajectories=20, views=1, frames=2, size=16)
    plain = render_dataset(str(tmp_path / "plain"), base, seed=4, progress=False)
    more = render_dataset(str(tmp_path / "more"), Preset(**{**base.__dict__, "extra_train_videos": 2}), seed=4,
                          progress=False)
    assert not os.path.exists(os.path.join(plain, "splits.json"))
    for split in ("val", "test"):
        assert split_names("panda", more, split) == split_names("panda", plain, split)
    assert split_names("panda", more, "train") == split_names("panda", plain, "train") + ["tr_0020", "tr_0021"]
    for rel in _listing(os.path.join(plain, "tr_0019")):
        with open(os.path.join(plain, "tr_0019", rel), "rb") as a, open(os.path.join(more, "tr_0019", rel), "rb") as b:
            assert a.read() == b.read()
    short = Preset(**{**base.__dict__, "trajectories": 8, "extra_train_videos": 2})
    with pytest.raises(UserError, match="needs its 20 trajectories"):
        render_dataset(str(tmp_path / "short"), short, seed=4, progress=False)
    assert not (tmp_path / "short").exists()


def test_view_settings():
    assert view_selection(9, -1)["test"] == list(range(9))
    assert view_selection(9, 6) == {"train": list(range(6)), "val": list(range(6)), "test": [6, 7, 8]}
    # the release: as many views as there are, or more, is the seen setting; 0 is no setting
    assert view_selection(4, 4) == view_selection(4, 9) == view_selection(4, -1)
    with pytest.raises(UserError):
        view_selection(4, 0)


def test_release_data_names_select_the_release_folders(tmp_path):
    assert resolve_dataset("Pandav1_Train_Frame") == ("panda", DATASETS["panda"])
    assert resolve_dataset("MineRLReachGoalGroundStatic-v0_Frame")[1].folder == DATASETS["mc"].folder
    for name, key in (("can_mh", "can"), ("lift_mh", "lift"), ("can_mh_v2", "can"), ("Pouring", "pouring")):
        found_key, spec = resolve_dataset(name)
        assert found_key == key and spec.folder == name and spec.window == DATASETS[key].window
    with pytest.raises(UserError, match="unknown data set 'kitchen'"):
        resolve_dataset("kitchen")


def test_release_pouring_validation_split(tmp_path):
    """The release validates on the 10 trajectories before the last 10 of train.pkl, which it trains on."""
    train = [{"name": f"pour_{i:02d}_real_cam0"} for i in range(25)]
    with open(tmp_path / "train.pkl", "wb") as f:
        pickle.dump(train, f)
    names = [f"pour_{i:02d}" for i in range(25)]
    assert split_names("pouring", str(tmp_path), "val") == names[15:]
    released = split_names("pouring", str(tmp_path), "val", release_pouring_val=True)
    assert released == names[5:15] and set(released) <= set(split_names("pouring", str(tmp_path), "train"))


def test_open_split_and_trajectory_tensors(root):
    trajectories, views = open_split(root, "mc", "train", train_views=2)
    assert [t.name for t in trajectories] == [f"tr_{i:04d}" for i in range(4)] and views == [0, 1]
    test, test_views = open_split(root, "mc", "test", train_views=2)
    assert [t.name for t in test] == ["tr_0006", "tr_0007"] and test_views == [2]
    assert test[0].view_dirs[0].endswith("fpv") and test[0].view_dirs[1].endswith(os.path.join("tpv", "view_0002"))
    cached = TrajectoryDataset(test, img_size=24, cache=True, progress=False)
    fresh = TrajectoryDataset(test, img_size=24, cache=False)
    assert cached[1].shape == (2, 8, 3, 24, 24) and cached[1].dtype == torch.uint8
    assert torch.equal(cached[1], fresh[1])
    assert torch.equal(cached.frames(0, [1], [5, 2]), fresh.frames(0, [1], [5, 2]))
    assert torch.equal(cached.frames(0, [1], [5]), cached[0][1:2, 5:6])


def test_png_frames_read_as_the_same_pixels(root):
    """A view folder of PNG frames (here the rendered JPEGs' decoded pixels, stored losslessly) gives the
    tensors its JPEG frames give; a folder of PNG frames with a gap is refused like one of JPEGs."""
    from PIL import Image
    jpeg, _ = open_split(root, "mc", "test", train_views=2)
    expected = TrajectoryDataset(jpeg, img_size=24, cache=False)[0]
    view = os.path.join(root, MC, "tr_0006", "tpv", "view_0002")
    for name in sorted(os.listdir(view)):
        Image.open(os.path.join(view, name)).save(os.path.join(view, name.replace(".jpg", ".png")))
        os.remove(os.path.join(view, name))
    png, _ = open_split(root, "mc", "test", train_views=2)
    assert png[0].frame_path(1, 3).endswith(os.path.join("view_0002", "000003.png"))
    assert png[0].frame_path(0, 3).endswith(os.path.join("fpv", "000003.jpg"))
    assert torch.equal(TrajectoryDataset(png, img_size=24, cache=False)[0], expected)
    os.remove(os.path.join(view, "000002.png"))
    with pytest.raises(UserError, match="not numbered 000000.png.. contiguously: expected 000002.png"):
        open_split(root, "mc", "test", train_views=2)
    for name in os.listdir(view):
        os.remove(os.path.join(view, name))
    with pytest.raises(UserError, match="no frames"):
        open_split(root, "mc", "test", train_views=2)


def test_triplet_sampling_invariants(root):
    trajectories, _ = open_split(root, "mc", "train", train_views=-1)
    data = TrajectoryDataset(trajectories, img_size=16, progress=False)
    window = DATASETS["mc"].window
    triplets = TripletDataset(data, window=window, seed=5)
    expected = {(k, i, j, a) for k in range(4) for i, j in itertools.combinations(range(4), 2) for a in range(8)}
    assert len(triplets) == len(expected) and {tuple(r) for r in triplets.index.tolist()} == expected
    draws = []
    for item in range(len(triplets)):
        frames, times, views = triplets[item]
        k, i, j, a = triplets.index[item].tolist()
        anchor, positive, negative = times.tolist()
        assert anchor == a and 1 <= abs(positive - anchor) <= window and abs(negative - anchor) > window
        assert views.tolist() == [i, j] and frames.shape == (2, 3, 3, 16, 16)
        assert torch.equal(frames, data[k][[i, j]][:, [anchor, positive, negative]])
        draws.append((positive, negative))
    assert [triplets.times(n) for n in range(20)] == [triplets.times(n) for n in range(20)]
    triplets.set_epoch(1)
    assert [triplets.times(n)[1:] for n in range(len(triplets))] != draws


def test_short_trajectory_is_rejected(root):
    trajectories, _ = open_split(root, "mc", "train")
    with pytest.raises(UserError, match="needs at least 10"):
        TripletDataset(TrajectoryDataset(trajectories, 16, progress=False), window=4)


def _cli_error(capsys, root, *extra):
    import multiview_video_alignment as mva
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: mva.main(["--data", "mc", "--data_root", root, "--img_size", "32", "--xpar",
                                  "--device", "cpu", "--output_dir", os.path.join(root, "out"), *extra]))
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code != 0 and err.startswith("error: ") and "\n" not in err
    return err


def test_missing_view_is_reported(root, capsys):
    shutil.rmtree(os.path.join(root, MC, "tr_0002", "tpv", "view_0001"))
    err = _cli_error(capsys, root)
    assert os.path.join(MC, "tr_0002", "tpv") in err


def test_unequal_frame_counts_are_reported(root, capsys):
    os.remove(os.path.join(root, MC, "tr_0003", "tpv", "view_0002", "000007.jpg"))
    err = _cli_error(capsys, root)
    assert "unequal frame counts" in err and os.path.join(MC, "tr_0003", "tpv", "view_0002") in err


def test_views_beyond_the_releases_number_are_not_read(root):
    """The release reads the first 8 third-person views of the Minecraft set (its max_views), whatever
    else the folders hold; a trajectory with fewer than that is an error."""
    for k in range(8):
        tpv = os.path.join(root, MC, f"tr_{k:04d}", "tpv")
        for v in range(3, 10 if k else 9):
            shutil.copytree(os.path.join(tpv, "view_0000"), os.path.join(tpv, f"view_{v:04d}"))
    assert count_dataset_views(root, "mc") == 8
    trajectories, views = open_split(root, "mc", "test", train_views=6)
    assert views == [6, 7] and len(trajectories[0].view_dirs) == 3
    for v in (7, 8, 9):
        shutil.rmtree(os.path.join(root, MC, "tr_0007", "tpv", f"view_{v:04d}"))
    with pytest.raises(UserError, match="does not have the 8 views"):
        open_split(root, "mc", "test", train_views=6)


def test_frames_beyond_the_first_person_view_are_not_read(root):
    """The release's rule: the first-person view sets a trajectory's length."""
    from data_pipeline.ftpv import open_trajectory
    view = os.path.join(root, MC, "tr_0003", "tpv", "view_0002")
    count = len(os.listdir(view))
    shutil.copy(os.path.join(view, "000000.jpg"), os.path.join(view, f"{count:06d}.jpg"))
    assert open_trajectory(os.path.join(root, MC), "tr_0003", [0, 1, 2]).num_frames == count


def test_corrupt_jpeg_is_reported(root, capsys):
    bad = os.path.join(root, MC, "tr_0001", "fpv", "000004.jpg")
    with open(bad, "wb") as f:
        f.write(b"not a jpeg at all")
    err = _cli_error(capsys, root)
    assert "cannot decode image" in err and bad in err


def test_missing_folder_exits_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "multiview_video_alignment.py"), "--data", "panda",
                           "--data_root", str(tmp_path / "nowhere"), "--device", "cpu", "--xpar",
                           "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: missing data set folder: {tmp_path / 'nowhere' / 'Pandav1_Train_Frame'}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    (["--size", "4"], "--size must be at least 16 pixels"),
    (["--trajectories", "12", "--extra_train_videos", "5"],
     "--extra_train_videos keeps the preset's validation and test trajectories, so it needs its 20 trajectories "
     "(--trajectories 12)"),
])
def test_render_cli_bad_flag(tmp_path, flags, message):
    proc = subprocess.run([sys.executable, "-m", "data_pipeline.render_ftpv", "--out", str(tmp_path), *flags,
                           "--xpar"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {message}"
    assert os.listdir(tmp_path) == []


def test_train_videos_cuts_pouring_only_as_the_release(tmp_path, capsys):
    import multiview_video_alignment as mva
    args = mva.build_parser().parse_args(["--data", "panda", "--train_videos", "3"])
    assert mva.videos_to_keep(args) == -1
    args = mva.build_parser().parse_args(["--data", "panda", "--train_videos", "3", "--train_videos_everywhere"])
    assert mva.videos_to_keep(args) == 3
    args = mva.build_parser().parse_args(["--data", "Pouring", "--train_videos", "3"])
    assert mva.videos_to_keep(args) == 3


def test_clips_longer_than_a_training_trajectory_are_refused(root):
    from data_pipeline import ClipDataset
    trajectories, _ = open_split(root, "mc", "train")
    data = TrajectoryDataset(trajectories, 32, progress=False)
    longest = max(data.num_frames(k) for k in range(len(data)))
    with pytest.raises(UserError, match=f"--clip_frames {longest + 1} is longer than training trajectory"):
        ClipDataset(data, clip_frames=longest + 1)
    assert ClipDataset(data, clip_frames=0).clip_frames == min(data.num_frames(k) for k in range(len(data)))
