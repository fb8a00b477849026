"""visualize.py on a randomly initialised 3DTRL model and a tiny trajectory rendered with pybullet."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from threedtrl.visualization import cli as visualize
from backbone import token_grid_uv
from data_pipeline.render_ftpv import Preset, render_dataset
from threedtrl.alignment.embedder import create_embedder
from threedtrl.runtime import save_checkpoint_atomic
from utils import alignment_error
from threedtrl.visualization import plots
from threedtrl.visualization.diagram import layer_diagram
from threedtrl.visualization.inference import nearest_frames

IMG = 48          # ViT patch 16 -> a 3x3 token grid
GRID = (3, 3)
FRAMES = 4
VIEWS = 2         # third-person views; with the first-person view V = 3
DISPLAY = 40
TURN = 3


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftpv")
    preset = Preset("Pandav1_Train_Frame", trajectories=1, views=VIEWS, frames=FRAMES, size=64)
    dataset_dir = render_dataset(str(root), preset, seed=0, workers=1, progress=False)
    return os.path.join(dataset_dir, "tr_0000")


def write_checkpoint(path, name, seed):
    torch.manual_seed(seed)
    cfg = {"model": name, "img_size": IMG, "pred_depth": 1, "pred_campos_from": "both-sep"}
    save_checkpoint_atomic({"model": create_embedder(cfg).net.state_dict(), "model_cfg": cfg, "epoch": 0}, path)
    return path


@pytest.fixture(scope="module")
def video_out(trajectory, tmp_path_factory):
    """One run on the trajectory: random-init 3DTRL model and a plain-ViT baseline checkpoint."""
    tmp = tmp_path_factory.mktemp("vis")
    baseline = write_checkpoint(str(tmp / "baseline.pth"), "vit_plain_tiny_patch16_224", seed=1)
    out = tmp / "out"
    visualize.main(["--trajectory", trajectory, "--img_size", str(IMG), "--baseline", baseline,
                    "--display_size", str(DISPLAY), "--turn_frames", str(TURN), "--out", str(out), "--xpar",
                    "--baseline_label", "ViT"])
    return out


def open_image(path):
    image = Image.open(path)
    image.load()
    return image


def gif_frames(path):
    image = Image.open(path)
    sizes = []
    for k in range(image.n_frames):
        image.seek(k)
        sizes.append(image.size)
    return image.n_frames, set(sizes)


def test_writes_every_figure_with_expected_sizes(video_out):
    views = 1 + VIEWS
    summary = json.loads((video_out / "summary.json").read_text())
    assert summary["files"] == ["depth.png", "depth.gif", "tokens3d.png", "tokens3d.gif", "cameras.png",
                                "alignment.gif", "alignment.png", "geometry.npz"]
    assert summary["views"] == ["fpv", "view_0", "view_1"] and summary["grid_size"] == list(GRID)
    assert open_image(video_out / "depth.png").size == (round(1.6 * views * plots.DPI), round(3.5 * plots.DPI))
    assert open_image(video_out / "tokens3d.png").size == (round(4 * 2.4 * plots.DPI), round(2.85 * plots.DPI))
    assert open_image(video_out / "cameras.png").size == (round(2 * 3.0 * plots.DPI), round(3.4 * plots.DPI))
    assert open_image(video_out / "alignment.png").size == (round(2.6 * VIEWS * plots.DPI), round(2.8 * plots.DPI))
    assert gif_frames(video_out / "depth.gif") == (FRAMES, {(round(1.6 * views * plots.DPI), 350)})
    turn_size = (round(plots.TURN_PANEL * plots.DPI), round((plots.TURN_PANEL + 0.45) * plots.DPI))
    assert gif_frames(video_out / "tokens3d.gif") == (TURN, {turn_size})
    assert gif_frames(video_out / "alignment.gif") == (FRAMES, {(round(1.7 * 4 * plots.DPI), 205)})


def test_depth_maps_have_the_token_grid_shape(video_out):
    geometry = np.load(video_out / "geometry.npz")
    assert geometry["depth"].shape == (1 + VIEWS, FRAMES, *GRID)
    assert geometry["points_world"].shape == (1 + VIEWS, FRAMES, GRID[0] * GRID[1], 3)
    assert geometry["rotation"].shape == (1 + VIEWS, FRAMES, 3, 3)
    assert np.isfinite(geometry["depth"]).all() and geometry["depth"].std() > 0
    # the depth panels differ from the plain images: the colour map is drawn over them
    depth_png = np.asarray(open_image(video_out / "depth.png").convert("RGB")).astype(int)
    h = depth_png.shape[0] // 2
    assert np.abs(depth_png[:h].mean((0, 1)) - depth_png[h:].mean((0, 1))).max() > 5


def test_world_points_follow_from_depth_and_camera(video_out):
    g = np.load(video_out / "geometry.npz")
    u, v = (a.numpy()[:, 0] for a in token_grid_uv(GRID))
    d = g["depth"].reshape(*g["depth"].shape[:2], -1)
    cam = np.stack([u * d, v * d, d], axis=-1)
    expected = np.einsum("vtnc,vtcd->vtnd", cam, g["rotation"]) + g["translation"][:, :, None]
    np.testing.assert_allclose(g["points_world"], expected, rtol=1e-4, atol=1e-4)


def test_alignment_compares_both_models(video_out):
    summary = json.loads((video_out / "summary.json").read_text())
    geometry = np.load(video_out / "geometry.npz")
    assert set(summary["alignment"]) == {"view_0", "view_1"}
    for view in summary["alignment"].values():
        assert set(view) == {"3DTRL", "ViT"}
        for result in view.values():
            assert len(result["nearest"]) == FRAMES and all(0 <= i < FRAMES for i in result["nearest"])
            assert 0 <= result["alignment_error"] < 1
    assert geometry["views"].tolist() == ["fpv", "view_0", "view_1"]


def test_still_images(tmp_path, trajectory):
    paths = [os.path.join(trajectory, "tpv", f"view_{v:04d}", "000002.jpg") for v in range(VIEWS)]
    out = tmp_path / "images"
    visualize.main(["--images", *paths, "--img_size", str(IMG), "--display_size", str(DISPLAY),
                    "--turn_frames", "2", "--out", str(out), "--xpar"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == ["depth.png", "tokens3d.png", "tokens3d.gif", "cameras.png", "geometry.npz"]
    assert np.load(out / "geometry.npz")["depth"].shape == (VIEWS, 1, *GRID)


def test_frustum_reaches_the_grid_corners():
    segments, top = plots.frustum_lines(np.eye(3), np.array([1.0, 0.0, 0.0]), depth=2.0, grid_size=(2, 4))
    assert segments.shape == (8, 2, 3)
    np.testing.assert_allclose(segments[:4, 0], np.tile([1.0, 0.0, 0.0], (4, 1)))
    np.testing.assert_allclose(segments[:4, 1], [[-3, -2, 2], [5, -2, 2], [5, 2, 2], [-3, 2, 2]])
    np.testing.assert_allclose(top, [[-3, -2, 2], [5, -2, 2]])


def test_diagram_and_nearest_frames():
    assert layer_diagram().shape == (480, 1100, 3)
    z1, z2 = torch.randn(7, 5), torch.randn(9, 5)
    nearest = nearest_frames(z1.numpy(), z2.numpy())
    expected = torch.cdist(z1, z2).argmin(1).numpy()
    np.testing.assert_array_equal(nearest, expected)
    z2 = z1 + 0.01 * torch.randn(7, 5)
    assert alignment_error(z1, z2) == np.abs(np.arange(7) - nearest_frames(z1.numpy(), z2.numpy())).mean() / 7


@pytest.mark.parametrize("argv, message", [
    (["--trajectory", "missing_folder"], "missing trajectory folder"),
    (["--model", "vit_plain_tiny_patch16_224"], "has no 3DTRL layer"),
    (["--instant", "99"], "--instant must be in 0..3"),
    (["--views", "7"], "has third-person views 0..1, not 7"),
    (["--baseline", "b.pth", "--baseline_label", "3DTRL"], "--label and --baseline_label must differ"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, trajectory, capsys, argv, message):
    out = tmp_path / "out"
    argv = ["--trajectory", trajectory, "--img_size", str(IMG), "--out", str(out), "--xpar"] + argv
    with pytest.raises(SystemExit) as exc:
        visualize.run_cli(lambda: visualize.main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_folder_of_someone_elses_figures_is_refused_and_our_own_is_redone(trajectory, tmp_path):
    from threedtrl.runtime import UserError
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "depth.png").write_bytes(b"my figure")
    (mine / "summary.json").write_text('{"my": "notes"}')
    with pytest.raises(UserError, match="holds files visualize.py did not write"):
        visualize.main(["--trajectory", trajectory, "--img_size", str(IMG), "--out", str(mine), "--xpar"])
    assert (mine / "depth.png").read_bytes() == b"my figure"
    ours = ["--trajectory", trajectory, "--img_size", str(IMG), "--out", str(tmp_path / "ours"), "--xpar",
            "--turn_frames", str(TURN), "--display_size", str(DISPLAY)]
    visualize.main(ours)
    visualize.main(ours)  # its own earlier output is redone
