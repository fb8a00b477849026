"""Geometry of 3DTRL: grid coordinates, back-projection, rotations, camera-to-world."""
import math

import pytest
import torch

from backbone import backproject, camera_to_world, euler_to_rotation, token_grid_uv


def _rx(t):
    return torch.tensor([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])


def _ry(p):
    return torch.tensor([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])


def _rz(s):  # the release's Rz: transpose of the textbook one
    return torch.tensor([[math.cos(s), math.sin(s), 0], [-math.sin(s), math.cos(s), 0], [0, 0, 1]])


def test_grid_uv_centred_in_patch_units():
    u, v = token_grid_uv((14, 14))
    assert u.shape == v.shape == (196, 1)
    assert u[:14, 0].tolist() == [c - 6.5 for c in range(14)]
    assert v[::14, 0].tolist() == [r - 6.5 for r in range(14)]
    assert torch.all(v[:14] == -6.5)


def test_grid_uv_non_square_raster_order():
    u, v = token_grid_uv((2, 3))
    assert u[:, 0].tolist() == [-1, 0, 1, -1, 0, 1]
    assert v[:, 0].tolist() == [-0.5, -0.5, -0.5, 0.5, 0.5, 0.5]


@pytest.mark.parametrize("axis, reference", [(0, _rx), (1, _ry), (2, _rz)])
def test_single_axis_rotations_match_hand_written_matrices(axis, reference):
    for angle in (0.3, -1.2, math.pi / 2):
        angles = torch.zeros(1, 3)
        angles[0, axis] = angle
        torch.testing.assert_close(euler_to_rotation(angles)[0], reference(angle).float(), atol=1e-6, rtol=0)


def test_quarter_turn_values():
    r = euler_to_rotation(torch.tensor([[0.0, 0.0, math.pi / 2]]))[0]
    torch.testing.assert_close(r, torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]), atol=1e-6, rtol=0)
    r = euler_to_rotation(torch.tensor([[math.pi / 2, 0.0, 0.0]]))[0]
    torch.testing.assert_close(r, torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]), atol=1e-6, rtol=0)


def test_composition_order_is_rz_ry_rx_and_batched():
    torch.manual_seed(0)
    angles = torch.randn(16, 3) * 2
    rotations = euler_to_rotation(angles.double())
    for a, r in zip(angles.double().tolist(), rotations):
        expected = _rz(a[2]).double() @ (_ry(a[1]).double() @ _rx(a[0]).double())
        torch.testing.assert_close(r, expected)


def test_rotations_are_orthonormal_with_unit_determinant():
    torch.manual_seed(1)
    r = euler_to_rotation(torch.randn(64, 3, dtype=torch.float64) * 5)
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(64, 3, 3))
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(64, dtype=torch.float64))


def test_rotation_is_differentiable():
    angles = torch.randn(4, 3, requires_grad=True)
    euler_to_rotation(angles).sum().backward()
    assert angles.grad is not None and torch.isfinite(angles.grad).all()


def test_backprojection():
    u, v = token_grid_uv((2, 2))
    depth = torch.tensor([[[2.0], [3.0], [4.0], [5.0]]])
    points = backproject(u, v, depth)
    expected = torch.tensor([[[-1.0, -1.0, 2.0], [1.5, -1.5, 3.0], [-2.0, 2.0, 4.0], [2.5, 2.5, 5.0]]])
    torch.testing.assert_close(points, expected)


def test_camera_to_world_uses_row_vectors():
    points = torch.tensor([[[1.0, 2.0, 3.0]]])
    rotation = _rz(math.pi / 2).float().unsqueeze(0)
    translation = torch.tensor([[[10.0, 20.0, 30.0]]])
    world = camera_to_world(points, rotation, translation)
    torch.testing.assert_close(world, points @ rotation + translation)
    torch.testing.assert_close(world, torch.tensor([[[8.0, 21.0, 33.0]]]), atol=1e-5, rtol=0)


def _layer_geometry(**options):
    import timm
    import model  # noqa: F401

    torch.manual_seed(0)
    net = timm.create_model("vit_3dtrl_tiny_patch16_224", num_classes=0, img_size=64, depth=2, trl_depth=1,
                            trl_geometry=options or None).eval()
    with torch.no_grad():
        _, geometry = net.forward_features(torch.randn(2, 3, 64, 64), return_geometry=True)
    return net, geometry


def test_geometry_options_are_off_by_default():
    net, geometry = _layer_geometry()
    assert not any("log_focal" in k for k in net.state_dict())
    u, v = token_grid_uv((4, 4))
    assert torch.allclose(geometry.points_cam[:, 0], backproject(u, v, geometry.depth[:, 0, :, None]))
    assert (geometry.depth < 0).any()  # the release's depth is unbounded


def test_positive_depth_and_a_pinhole_camera():
    net, geometry = _layer_geometry(depth_activation="softplus", focal=3.5, principal_point=(0.5, -0.25))
    assert (geometry.depth > 0).all()
    x, y, z = geometry.points_cam[:, 0].unbind(-1)
    u, v = token_grid_uv((4, 4))
    assert torch.allclose(3.5 * x / z + 0.5, u[:, 0].expand_as(x), atol=1e-5)
    assert torch.allclose(3.5 * y / z - 0.25, v[:, 0].expand_as(y), atol=1e-5)


def test_a_learned_focal_length_gets_a_gradient():
    import timm

    net, _ = _layer_geometry(learn_focal=True, focal=2.0)
    focal = net.three_d_trl.estimator.log_focal
    assert focal.item() == pytest.approx(math.log(2.0))
    net.train()
    net.forward_features(torch.randn(2, 3, 64, 64)).sum().backward()
    assert focal.grad is not None and focal.grad.abs().item() > 0
    with pytest.raises(ValueError, match="depth_activation"):
        timm.create_model("vit_3dtrl_tiny_patch16_224", img_size=64, trl_geometry=dict(depth_activation="relu"))
