"""Ground truth written by the renderers, and the geometry evaluation against it: exact geometry gives
zero error, cameras that know nothing give the reference values, bad input is one line."""
import csv
import json
import math
import os
import shutil

import cv2

import numpy as np
import pytest
import torch

from threedtrl.alignment.embedder import MODEL_DEFAULTS, create_embedder
from threedtrl.alignment.geometry_objectives import project_to_grid
from threedtrl.visualization import cli as visualize
from data_pipeline.ground_truth import load_ground_truth
from data_pipeline.render_ftpv import GROUND_TRUTH, Preset, render_dataset, sample_episode
from threedtrl.tools import render_objects
from threedtrl.runtime import UserError
from threedtrl.visualization import geometry_eval as ge

TINY = Preset("Pandav1_Train_Frame", trajectories=20, views=3, frames=4, size=32)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ftpv_geometry"))
    render_dataset(out, TINY, seed=2, workers=1, progress=False)
    return out


def _truth(root, index=15):
    names = ["fpv"] + [f"view_{v:04d}" for v in range(TINY.views)]
    return load_ground_truth(os.path.join(root, TINY.folder, f"tr_{index:04d}"), names)


def _unproject(truth, view, t):
    """World points ``(3, M)`` of every pixel with depth, from the stored K, pose and depth."""
    depth = truth["depth"][view, t]
    rows, cols = np.nonzero(np.isfinite(depth))
    pixels = np.stack([cols + 0.5, rows + 0.5, np.ones(len(cols))])
    cam = np.linalg.inv(truth["intrinsics"]) @ pixels * depth[rows, cols]
    inverse = np.linalg.inv(truth["world_to_camera"][view, t])
    return inverse[:3, :3] @ cam + inverse[:3, 3:], rows, cols


def test_ground_truth_matches_the_rendered_floor(root):
    truth = _truth(root)
    for view in range(1 + TINY.views):
        world, _, _ = _unproject(truth, view, 0)
        floor = np.abs(world[2]) < 0.003           # within 3 mm of the plane z = 0
        assert floor.mean() > 0.5 and world[2].min() > -0.003, (view, world[2].min())


def test_ground_truth_puts_the_cube_where_it_was_drawn(root):
    """Project the resting cube's top centre with the stored camera: the frame shows the cube's colour there."""
    index = 15
    episode = sample_episode(np.random.default_rng([2, index]))
    top = np.array([*episode.cube_xy, 0.06, 1.0])                    # _CUBE_HALF = 0.03: the top face
    truth = _truth(root, index)
    seen = 0
    for view in range(1, 1 + TINY.views):
        cam = (truth["world_to_camera"][view, 0] @ top)[:3]
        col, row = (truth["intrinsics"] @ (cam / cam[2]))[:2] - 0.5
        col, row = int(round(col)), int(round(row))
        if not (0 <= row < TINY.size and 0 <= col < TINY.size):
            continue
        image = cv2.imread(os.path.join(root, TINY.folder, f"tr_{index:04d}", "tpv", f"view_{view - 1:04d}",
                                        "000000.jpg"))[:, :, ::-1]
        colour = image[row, col] / 255.0
        seen += np.abs(colour - np.array(episode.colour)).max() < 0.35
        assert abs(truth["depth"][view, 0, row, col] - cam[2]) < 0.05   # the depth there is the cube's
    assert seen >= 2


def test_exact_geometry_gives_zero_error(root):
    truth = _truth(root)
    rotation, centre = ge.cameras_from_world_to_camera(truth["world_to_camera"])
    rng = np.random.default_rng(0)
    q, scale, shift = ge.random_rotations((), rng), 3.7, rng.normal(size=3)      # another world frame and scale
    layer_rotation = rotation @ q.T                                              # world'-to-camera
    layer_translation = scale * centre @ q.T + shift                             # camera centres in world'
    depth = 2.5 * np.nan_to_num(ge.token_depth(truth["depth"], (4, 4)))  # any increasing function of the truth
    scores = ge.GeometryScores()
    scores.add("model", depth, layer_rotation, layer_translation, truth)
    scores.add_references(truth)
    summary = scores.summary()
    assert summary["depth_spearman"]["model"] == pytest.approx(1.0)
    assert summary["relative_rotation_error_deg"]["model"] == pytest.approx(0.0, abs=1e-4)
    assert summary["relative_rotation_error_deg_third_person"]["model"] == pytest.approx(0.0, abs=1e-4)
    assert summary["rotation_accuracy_at_30_deg_third_person"]["model"] == 1.0
    assert summary["translation_direction_error_deg"]["model"] == pytest.approx(0.0, abs=1e-4)
    spread = summary["camera_spread"]
    assert spread["model_rotation_across_views_deg"] == pytest.approx(spread["truth_rotation_across_views_deg"])
    ratio = spread["model_centre_across_views"] / spread["truth_centre_across_views"]
    assert ratio == pytest.approx(scale)


def test_random_cameras_give_the_reference_values(root):
    truth = _truth(root)
    rng = np.random.default_rng(1)
    scores = ge.GeometryScores(seed=2)
    shape = truth["world_to_camera"].shape[:2]
    for _ in range(40):
        scores.add("random", rng.normal(size=(*shape, 4, 4)), ge.random_rotations(shape, rng),
                   rng.normal(size=(*shape, 3)), truth)
        scores.add_references(truth)
    summary = scores.summary()
    # a uniformly random rotation is on average pi/2 + 2/pi rad = 126.5 degrees from any fixed one
    assert summary["relative_rotation_error_deg"]["random"] == pytest.approx(126.5, abs=4)
    assert summary["relative_rotation_error_deg"]["random_rotations"] == pytest.approx(126.5, abs=4)
    assert summary["translation_direction_error_deg"]["random"] == pytest.approx(90, abs=4)
    assert abs(summary["depth_spearman"]["random"]) < 0.05
    true_relative = ge.rotation_angle_deg(ge.relative_rotations(ge.cameras_from_world_to_camera(
        truth["world_to_camera"])[0])).mean()
    assert summary["relative_rotation_error_deg"]["identical_cameras"] == pytest.approx(true_relative)
    # the pairs of third-person cameras alone: the view pairs (a, b) with a > 0
    true_third = ge.rotation_angle_deg(ge.relative_rotations(ge.cameras_from_world_to_camera(
        truth["world_to_camera"][1:])[0])).mean()
    assert summary["relative_rotation_error_deg_third_person"]["identical_cameras"] == pytest.approx(true_third)
    assert summary["relative_rotation_error_deg_third_person"]["random"] == pytest.approx(126.5, abs=6)
    assert all(np.isfinite(v) for table in summary.values() for v in table.values())


def _checkpoint(tmp_path, name, model):
    cfg = dict(MODEL_DEFAULTS, model=model, img_size=32, patch_size=8, depth=2, trl_depth=1)
    embedder = create_embedder(cfg)
    path = str(tmp_path / f"{name}.pth")
    torch.save({"model": embedder.net.state_dict(), "model_cfg": cfg, "epoch": 0}, path)
    return path


def test_geometry_eval_command(root, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "trl", "vit_3dtrl_tiny_patch16_224")
    visualize.main(["--checkpoint", ckpt, "--geometry_eval", root, "--out", str(tmp_path / "out"), "--xpar"])
    result = json.loads((tmp_path / "out" / "geometry.json").read_text())
    for key in ("depth_spearman", "relative_rotation_error_deg", "translation_direction_error_deg"):
        assert "model" in result[key] and "random_init" in result[key]
        assert all(np.isfinite(v) for v in result[key].values())
    assert {"random_rotations", "identical_cameras"} <= set(result["relative_rotation_error_deg"])
    reprojection = result["reprojection_error"]
    assert set(reprojection) == {"model", "random_init", "truth", "identical_cameras"}
    # the true cameras and depths put each token on the colour the other views show there, better than
    # one camera for every view (which keeps each token on its own grid cell)
    assert reprojection["truth"] < reprojection["identical_cameras"]
    assert len(result["trajectories"]) == 5 and "depth_spearman" in capsys.readouterr().out


def test_geometry_eval_bad_input(root, tmp_path):
    plain = _checkpoint(tmp_path, "plain", "vit_plain_tiny_patch16_224")
    with pytest.raises(UserError, match="no 3DTRL layer"):
        visualize.main(["--checkpoint", plain, "--geometry_eval", root, "--out", str(tmp_path / "o")])
    bare = tmp_path / "bare"
    shutil.copytree(root, bare)
    for k in range(15, 20):  # the test split without its ground truth
        os.remove(bare / TINY.folder / f"tr_{k:04d}" / GROUND_TRUTH)
    trl = _checkpoint(tmp_path, "trl", "vit_3dtrl_tiny_patch16_224")
    with pytest.raises(UserError, match="has ground truth"):
        visualize.main(["--checkpoint", trl, "--geometry_eval", str(bare), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_object_renderer_writes_each_camera(tmp_path):
    out = str(tmp_path / "objects")
    render_objects.main(["--out", out, "--preset", "tiny", "--workers", "1", "--no-progress"])
    with open(os.path.join(out, "cameras.csv")) as f:
        rows = list(csv.DictReader(f))
    images = [os.path.join(r["split"], r["class"], r["file"]) for r in rows]
    assert all(os.path.isfile(os.path.join(out, p)) for p in images) and len(rows) == 3 * (8 + 4)
    val = [r for r in rows if r["split"] == "val"]
    assert all(40 <= float(r["elevation_deg"]) <= 65 for r in val)
    assert os.path.isfile(os.path.join(out, "render.json"))
    assert GROUND_TRUTH not in os.listdir(out)


def test_direction_between_cameras_at_one_point_is_undefined_not_a_warning():
    import warnings
    a = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    b = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        angles = ge.angle_between_deg(a, b)
    np.testing.assert_allclose(angles[[0, 2]], [90.0, 0.0], atol=1e-6)
    assert np.isnan(angles[1])


def test_the_fields_measures_on_exact_geometry_in_another_frame_and_scale(root):
    """Exact depth up to scale (median scaling) or an affine map (scale and shift), exact cameras in
    another world frame: AbsRel 0, every token within 1.25, every rotation within 15 degrees, AUC 1."""
    truth = _truth(root)
    rotation, centre = ge.cameras_from_world_to_camera(truth["world_to_camera"])
    q = ge.random_rotations((), np.random.default_rng(0))
    true_depth = np.nan_to_num(ge.token_depth(truth["depth"], (4, 4)), nan=1.0)
    for depth, fit in ((2.5 * true_depth, "median"), (0.4 * true_depth - 3.0, "scale_shift")):
        scores = ge.GeometryScores()
        scores.add("model", depth, rotation @ q.T, 3.0 * centre @ q.T, truth)
        scores.add_references(truth)
        summary = scores.summary()
        assert summary[f"depth_absrel_{fit}"]["model"] == pytest.approx(0.0, abs=1e-9)
        assert summary[f"depth_delta_{fit}"]["model"] == pytest.approx(1.0)
        assert summary["depth_absrel_scale_shift"]["model"] == pytest.approx(0.0, abs=1e-9)
        for key in ("rotation_accuracy_at_15_deg", "rotation_accuracy_at_30_deg", "rotation_auc_30_deg"):
            assert summary[key]["model"] == pytest.approx(1.0, abs=1e-6)
    # the shuffled predictions and the best constant rotation know nothing of each image pair
    assert summary["rotation_auc_30_deg"]["shuffled_model"] < 1.0
    assert summary["depth_absrel_scale_shift"]["shuffled_model"] > 0.01


def test_the_fields_measures_on_random_predictions_give_their_reference_values():
    """Uniform random rotations against fixed ones: P(angle <= a) = (a - sin a) / pi, so 0.0075 at 30
    degrees and 0.00097 at 15; the AUC to 30 degrees is the integral of that over [0, 30] / 30."""
    rng = np.random.default_rng(3)
    errors = ge.rotation_angle_deg(ge.random_rotations((200_000,), rng))
    for degrees in (15.0, 30.0):
        a = np.radians(degrees)
        p = (a - np.sin(a)) / np.pi
        assert ge.rotation_accuracy(errors, degrees) == pytest.approx(p, abs=4 * np.sqrt(p / len(errors)))
    grid = np.radians(np.linspace(0, 30, 3001))
    expected_auc = np.trapezoid((grid - np.sin(grid)) / np.pi, grid) / np.radians(30)
    assert ge.rotation_auc(errors) == pytest.approx(expected_auc, rel=0.15)
    # depth from noise: after median scaling, AbsRel of lognormal noise of sigma 1 around the truth
    true = np.exp(rng.normal(size=(200, 64)))
    pred = true * np.exp(rng.normal(size=true.shape))
    scores = ge.depth_errors(pred, true)
    within = math.erf(np.log(1.25) / np.sqrt(2))  # P(|N(0, 1)| < log 1.25)
    assert np.nanmean(scores["delta_median"]) == pytest.approx(within, abs=0.03)


def test_orbit_cameras_are_the_object_renderers_cameras():
    """orbit_camera_rotations (no pybullet) against pybullet's look-at camera of tools/render_objects.py."""
    from threedtrl import simulation
    for azimuth, elevation in ((0.0, 0.0), (-70.0, 25.0), (135.0, 60.0), (179.0, 41.0)):
        az, el = np.radians(azimuth), np.radians(elevation)
        eye = 2.5 * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        expected = simulation.world_to_camera(simulation.look_at_view(eye, np.zeros(3)))[:3, :3]
        np.testing.assert_allclose(ge.orbit_camera_rotations(np.array([azimuth]), np.array([elevation]))[0], expected,
                                   atol=1e-6)


def test_object_camera_scores_exact_and_random():
    """Exact cameras in another world frame per class give zero error; random ones the uniform reference."""
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 12)
    true = ge.orbit_camera_rotations(rng.uniform(-180, 180, 36), rng.uniform(40, 65, 36))
    frames = {k: ge.random_rotations((), rng) for k in "abc"}                 # a world frame of each object's own
    exact = np.stack([r @ frames[k] for r, k in zip(true, labels)])
    scores = ge.object_camera_scores(exact, true, labels)
    assert scores["pairs"]["count"] == 3 * 66
    assert scores["relative_rotation_error_deg"]["model"] == pytest.approx(0.0, abs=1e-4)
    assert scores["rotation_accuracy_at_15_deg"]["model"] == 1.0 and scores["rotation_auc_30_deg"]["model"] > 0.999
    random = ge.object_camera_scores(ge.random_rotations((36,), rng), true, labels)
    assert 100 < random["relative_rotation_error_deg"]["model"] < 150           # uniform: 126.5 on average
    with pytest.raises(UserError, match="no two images of one class"):
        ge.object_camera_scores(exact[:3], true[:3], ["a", "b", "c"])


def test_feature_matching_distance_exact_and_random():
    """Views that see the same points in other token orders: features that name each point match them
    exactly (distance 0, the floor); random features match like a random token."""
    rng = np.random.default_rng(3)
    views, length, tokens = 3, 2, 12
    world = rng.normal(size=(length, tokens, 3))
    orders = np.stack([np.stack([rng.permutation(tokens) for _ in range(length)]) for _ in range(views)])
    points = np.stack([[world[t][orders[v, t]] for t in range(length)] for v in range(views)])   # (V, T, N, 3)
    names = np.eye(tokens)[orders]                                                              # one-hot identity
    exact = ge.matched_point_distances(names, points, rng)
    assert np.allclose(exact["features"], 0) and np.allclose(exact["nearest_point"], 0)
    assert len(exact["features"]) == views * (views - 1) * length * tokens
    noise = ge.matched_point_distances(rng.normal(size=(views, length, tokens, 8)), points, rng)
    assert abs(noise["features"].mean() - noise["random_token"].mean()) < 0.25
    assert noise["features"].mean() > 0.5


def test_true_pinhole_projects_each_true_token_onto_its_own_cell(root):
    """The renderer's cameras with ``true_pinhole`` in the objective's conventions: every token with a
    true depth, lifted and projected back into its own view, lands on its own grid cell."""
    truth, grid = _truth(root), (4, 4)
    points = ge.token_world_points(truth, grid, fill_empty=True)                    # (V, T, N, 3)
    rotation, centre = ge.cameras_from_world_to_camera(truth["world_to_camera"])
    per_instant = [torch.from_numpy(np.swapaxes(a, 0, 1).copy()).double()
                   for a in (points, rotation, centre[:, :, None])]
    projected, seen = project_to_grid(*per_instant, grid, *ge.true_pinhole(truth, grid))
    own = projected.diagonal(dim1=1, dim2=2).movedim(-1, 1)                        # (T, V, N, 2): view a in a
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, 4), torch.linspace(-1, 1, 4), indexing="ij")
    cells = torch.stack([cols.flatten(), rows.flatten()], -1).double()
    assert torch.allclose(own, cells.expand_as(own), atol=1e-6)
    assert seen.diagonal(dim1=1, dim2=2).all()


def test_identical_cameras_reference_compares_each_cell_with_the_same_cell(root):
    """One camera for every view keeps each token on its own cell in every view: the reference is the
    mean colour difference of the same cell in two views."""
    truth, grid = _truth(root), (4, 4)
    views, length = truth["depth"].shape[:2]
    colours = np.random.default_rng(5).uniform(size=(views, length, 16, 3))
    scores = ge.GeometryScores()
    scores.add_reprojection_references(truth, colours, grid)
    pairs = [(a, b) for a in range(views) for b in range(views) if a != b]
    same_cell = np.mean([np.abs(colours[a] - colours[b]).mean() for a, b in pairs])
    result = scores.summary()["reprojection_error"]
    assert result["identical_cameras"] == pytest.approx(same_cell, rel=1e-5)
    # the path's far end, in the first view's camera frame, is the truth in the renderer's world frame
    rotation, centre = ge.cameras_from_world_to_camera(truth["world_to_camera"])
    direct = ge.reprojection_error(ge.token_world_points(truth, grid, fill_empty=True), rotation, centre, colours,
                                   grid, ge.true_pinhole(truth, grid))
    assert result["truth"] == pytest.approx(direct, rel=1e-5)
    path = scores.summary()["reprojection_path"]
    assert list(path) == [f"{f:.1f}" for f in np.linspace(0, 1, 11)] and path["0.0"] == result["identical_cameras"]


def test_cameras_towards_truth_ends_at_identical_and_true_relative_poses(root):
    truth = _truth(root)
    rotation, centre = ge.cameras_from_world_to_camera(truth["world_to_camera"])
    start, start_centre = ge.cameras_towards_truth(rotation, centre, 0.0)
    assert np.allclose(start, np.eye(3), atol=1e-9) and np.allclose(start_centre, 0)
    end, end_centre = ge.cameras_towards_truth(rotation, centre, 1.0)
    assert np.allclose(ge.relative_rotations(end), ge.relative_rotations(rotation), atol=1e-5)
    half, _ = ge.cameras_towards_truth(rotation, centre, 0.5)
    assert np.allclose(ge.rotation_angle_deg(half[1:]) * 2, ge.rotation_angle_deg(end[1:]), atol=1e-4)
    assert np.allclose(np.linalg.norm(end_centre[1:] - end_centre[:1], axis=-1),
                       np.linalg.norm(centre[1:] - centre[:1], axis=-1))            # the same distances apart


def test_reprojection_landscape_tool_measures_every_grid_and_keeps_foreign_files(root, tmp_path, capsys):
    from threedtrl.tools import reprojection_landscape
    out = tmp_path / "landscape.json"
    reprojection_landscape.main(["--data_root", root, "--train_views", "-1", "--img_size", "32", "--grids", "2", "4",
                                 "--out", str(out), "--no-progress"])
    result = json.loads(out.read_text())
    assert set(result["grids"]) == {"2", "4"} and result["views"] == ["fpv", "view_0000", "view_0001", "view_0002"]
    for row in result["grids"].values():
        path = list(row["path"].values())
        assert len(path) == 11 and row["identical_cameras"] == path[0] and row["truth"] == path[-1]
        assert row["truth"] < row["identical_cameras"]
        # the climb is the largest rise over the lowest value before it
        assert row["climb"]["value"] == pytest.approx(max(v - min(path[:i + 1]) for i, v in enumerate(path)))
    assert "4x4:" in capsys.readouterr().out
    reprojection_landscape.main(["--data_root", root, "--train_views", "-1", "--img_size", "32", "--grids", "4",
                                 "--out", str(out), "--no-progress"])     # its own file is replaced
    assert set(json.loads(out.read_text())["grids"]) == {"4"}
    foreign = tmp_path / "notes.json"
    foreign.write_text("my notes")
    with pytest.raises(UserError, match="not written by this tool"):
        reprojection_landscape.main(["--data_root", root, "--out", str(foreign), "--train_views", "2"])
    assert foreign.read_text() == "my notes"
