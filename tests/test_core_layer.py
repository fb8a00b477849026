"""The ThreeDTRL layer: camera modes, variants, the video layout, gradients."""
import pytest
import torch

from backbone import CameraEstimator
from model import ThreeDTRL

DIM = 16


def _tokens(batch, grid, frames=1, cls=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, int(cls) + grid[0] * grid[1] * frames, DIM, generator=g)


@pytest.mark.parametrize("mode, submodules", [
    ("both-sep", {"cls_proj", "token_proj_1", "token_proj_2"}),
    ("both-avg", {"token_proj_1", "token_proj_2"}),
    ("cls", {"cls_proj"}),
    ("tok", {"token_proj_1", "token_proj_2"}),
])
def test_camera_modes_create_only_what_they_use(mode, submodules):
    camera = CameraEstimator(DIM, mode)
    present = {name for name in ("cls_proj", "token_proj_1", "token_proj_2") if hasattr(camera, name)}
    assert present == submodules
    tokens = torch.randn(3, 6, DIM)
    rotation, translation = camera(tokens, 0 if mode == "tok" else 1)
    assert rotation.shape == (3, 3, 3) and translation.shape == (3, 1, 3)
    assert all(p.grad is None for p in camera.parameters())
    (rotation.sum() + translation.sum()).backward()
    assert all(p.grad is not None for p in camera.parameters())


def test_camera_modes_read_different_inputs():
    torch.manual_seed(0)
    tokens = torch.randn(2, 6, DIM)
    other_cls, other_patches = tokens.clone(), tokens.clone()
    other_cls[:, 0] = torch.randn(2, DIM)
    other_patches[:, 1:] *= 2
    for mode, depends_on_cls, depends_on_patches in [("cls", True, False), ("both-sep", True, True),
                                                      ("both-avg", True, True)]:
        camera = CameraEstimator(DIM, mode)
        base = camera(tokens)[1]
        assert (not torch.allclose(camera(other_cls)[1], base)) == depends_on_cls, mode
        assert (not torch.allclose(camera(other_patches)[1], base)) == depends_on_patches, mode


def test_camera_token_branch_pools_patches_only_except_in_both_avg():
    torch.manual_seed(0)
    tokens = torch.randn(2, 6, DIM)
    sep = CameraEstimator(DIM, "both-sep")
    h = sep.cls_proj(tokens[:, 0]) + sep.token_proj_2(sep.token_proj_1(tokens[:, 1:]).mean(1))
    torch.testing.assert_close(sep(tokens)[1], sep.trans(sep.mix_proj(h)).unsqueeze(1))
    avg = CameraEstimator(DIM, "both-avg")
    h = avg.token_proj_2(avg.token_proj_1(tokens).mean(1))
    torch.testing.assert_close(avg(tokens)[1], avg.trans(avg.mix_proj(h)).unsqueeze(1))
    tok = CameraEstimator(DIM, "tok")
    h = tok.token_proj_2(tok.token_proj_1(tokens).mean(1))
    torch.testing.assert_close(tok(tokens, 0)[1], tok.trans(tok.mix_proj(h)).unsqueeze(1))
    with pytest.raises(ValueError, match="needs a CLS token"):
        sep(tokens, 0)


def test_camera_init():
    camera = CameraEstimator(DIM, "both-sep")
    assert torch.all(camera.trans.weight == 1) and torch.all(camera.trans.bias == 0)
    video_camera = CameraEstimator(DIM, "both-sep", zero_init_rotation=True)
    rotation, _ = video_camera(torch.randn(2, 5, DIM))
    torch.testing.assert_close(rotation, torch.eye(3).expand(2, 3, 3))


def test_unknown_camera_mode_and_cls_requirements():
    with pytest.raises(ValueError, match="unknown camera mode"):
        ThreeDTRL(DIM, (2, 2), pred_campos_from="bogus")
    with pytest.raises(ValueError, match="needs a CLS token"):
        ThreeDTRL(DIM, (2, 2), has_cls=False, pred_campos_from="both-sep")


def test_layer_matches_the_spec_formula():
    torch.manual_seed(0)
    layer = ThreeDTRL(DIM, (2, 3))
    x = _tokens(2, (2, 3))
    pe2d = torch.randn(1, 7, DIM)
    out, geo = layer(x, (2, 3), pe2d, return_geometry=True)
    est = layer.estimator
    depth = est.camera_coord(x[:, 1:])
    p_cam = torch.cat([est.u * depth, est.v * depth, depth], -1)
    rotation, translation = est.camera_props(x)
    p_world = p_cam @ rotation + translation
    e3d = layer.pos_emb_world(p_world)
    expected = x + torch.cat([layer.pos_emb_world_cls.expand(2, -1, -1), e3d], 1) + pe2d
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(geo.points_world[:, 0], p_world)
    torch.testing.assert_close(geo.depth[:, 0], depth[..., 0])
    assert geo.grid_size == (2, 3)


def test_x2d_skips_the_2d_term_and_cat_variant_has_no_2d_term():
    torch.manual_seed(0)
    x, pe2d = _tokens(2, (2, 2)), torch.randn(1, 5, DIM)
    for kwargs in ({"x2d": True}, {"cat": True}):
        layer = ThreeDTRL(DIM, (2, 2), **kwargs)
        torch.testing.assert_close(layer(x, (2, 2), pe2d), layer(x, (2, 2), None))
    layer = ThreeDTRL(DIM, (2, 2))
    assert not torch.allclose(layer(x, (2, 2), pe2d), layer(x, (2, 2), None))


@pytest.mark.parametrize("has_cls", [True, False])
def test_cat_variant(has_cls):
    layer = ThreeDTRL(DIM, (3, 3), has_cls=has_cls, cat=True, pred_campos_from="both-sep" if has_cls else "tok")
    assert not hasattr(layer, "pos_emb_world") and layer.proj_world[0].in_features == DIM + 3
    x = _tokens(2, (3, 3), cls=has_cls)
    out, geo = layer(x, (3, 3), return_geometry=True)
    patches = x[:, int(has_cls):]
    torch.testing.assert_close(out[:, int(has_cls):],
                               patches + layer.proj_world(torch.cat([patches, geo.points_world[:, 0]], -1)))


def test_direct_xyz_variant():
    layer = ThreeDTRL(DIM, (2, 2), pred_depth=False)
    assert layer.estimator.camera_coord.net[2].out_features == 3
    x = _tokens(2, (2, 2))
    _, geo = layer(x, (2, 2), return_geometry=True)
    torch.testing.assert_close(geo.points_cam[:, 0], layer.estimator.camera_coord(x[:, 1:]))
    torch.testing.assert_close(geo.depth, geo.points_cam[..., 2])


def test_video_layout_with_one_frame_equals_image_layout():
    torch.manual_seed(0)
    layer = ThreeDTRL(DIM, (3, 4), zero_init_rotation=True)
    x, pe2d = _tokens(2, (3, 4)), torch.randn(1, 13, DIM)
    torch.testing.assert_close(layer(x, (3, 4), pe2d, num_frames=1), layer(x, (3, 4), pe2d))


def _to_video(frames):
    """``(B, T, 1 + N, D)`` per-frame tokens (same CLS) -> ``(B, 1 + N*T, D)`` in (h w t) order."""
    cls = frames[:, 0, :1]
    patches = frames[:, :, 1:].transpose(1, 2).flatten(1, 2)
    return torch.cat([cls, patches], 1)


def test_video_layout_repeated_frame_gives_the_image_result_per_frame():
    torch.manual_seed(0)
    layer = ThreeDTRL(DIM, (2, 3))
    image, pe2d = _tokens(2, (2, 3)), torch.randn(1, 7, DIM)
    expected, geo_image = layer(image, (2, 3), pe2d, return_geometry=True)
    video = _to_video(image.unsqueeze(1).expand(-1, 4, -1, -1))
    out, geo = layer(video, (2, 3), pe2d, num_frames=4, return_geometry=True)
    torch.testing.assert_close(out, _to_video(expected.unsqueeze(1).expand(-1, 4, -1, -1)))
    assert geo.depth.shape == (2, 4, 6) and geo.points_world.shape == (2, 4, 6, 3)
    for t in range(4):
        torch.testing.assert_close(geo.points_world[:, t], geo_image.points_world[:, 0])


def test_video_layout_frames_keep_their_own_depth_but_share_one_camera():
    torch.manual_seed(0)
    layer = ThreeDTRL(DIM, (2, 2))
    frames = torch.randn(1, 3, 5, DIM)
    frames[:, :, 0] = frames[:, :1, 0]
    out, geo = layer(_to_video(frames), (2, 2), num_frames=3, return_geometry=True)
    for t in range(3):
        torch.testing.assert_close(geo.depth[:, t], layer.estimator.camera_coord(frames[:, t, 1:])[..., 0])
    clip = torch.cat([frames[:, 0, :1], frames[:, :, 1:].flatten(1, 2)], 1)
    rotation, translation = layer.estimator.camera_props(clip)
    torch.testing.assert_close(geo.rotation, rotation)
    torch.testing.assert_close(geo.translation, translation)


def test_gradients_reach_every_parameter():
    for kwargs in ({}, {"cat": True}, {"pred_depth": False}, {"pred_campos_from": "both-avg"}):
        layer = ThreeDTRL(DIM, (2, 2), **kwargs)
        layer(_tokens(2, (2, 2)), (2, 2), torch.randn(1, 5, DIM)).square().sum().backward()
        missing = [n for n, p in layer.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, (kwargs, missing)


def test_wrong_token_count_is_reported():
    layer = ThreeDTRL(DIM, (2, 2))
    with pytest.raises(ValueError, match="expected 1 \\+ 3x3"):
        layer(_tokens(1, (2, 2)), (3, 3))


def test_other_grid_than_built_for_uses_its_own_coordinates():
    layer = ThreeDTRL(DIM, (14, 14))
    _, geo = layer(_tokens(1, (3, 5)), (3, 5), return_geometry=True)
    u, v = layer.estimator.grid_uv((3, 5))
    assert u.shape == (15, 1) and u.max().item() == 2.0 and v.max().item() == 1.0
    depth = geo.depth[0, 0]
    torch.testing.assert_close(geo.points_cam[0, 0, :, 0], u[:, 0] * depth)
