"""The geometric objectives of --geometry_loss: zero on consistent geometry, positive otherwise, in the
layer's own conventions."""
import math

import pytest
import torch

from backbone.geometry import backproject, camera_to_world, euler_to_rotation, token_grid_uv
from threedtrl.alignment import geometry_objectives as go

GRID = (4, 4)
N = GRID[0] * GRID[1]


def random_rotations(count, generator):
    return euler_to_rotation(torch.rand(count, 3, generator=generator) * 2 * math.pi)


def test_a_quarter_turn_of_the_image_is_a_quarter_roll_of_the_camera():
    g = torch.Generator().manual_seed(0)
    u, v = token_grid_uv(GRID)
    depth = torch.rand(2, N, generator=g) + 1
    turned_depth = go.turn_token_values(depth, GRID)
    points = backproject(u, v, depth[..., None])
    turned_points = backproject(u, v, turned_depth[..., None])
    source = go.turn_token_values(torch.arange(N).expand(2, N), GRID)  # which token each turned one shows
    assert torch.allclose(turned_points, torch.gather(points, 1, source[..., None].expand(-1, -1, 3)) @ go.QUARTER_TURN)
    # so the rolled camera M^T R at the same centre puts every token at the same world point
    rotation, centre = random_rotations(2, g), torch.randn(2, 1, 3, generator=g)
    world = camera_to_world(points, rotation, centre)
    turned_world = camera_to_world(turned_points, go.QUARTER_TURN.T @ rotation, centre)
    assert torch.allclose(turned_world, torch.gather(world, 1, source[..., None].expand(-1, -1, 3)), atol=1e-5)
    # and the turn of the token grid is the turn of the image
    image = torch.arange(16.0).view(1, 1, 4, 4).repeat_interleave(2, -1).repeat_interleave(2, -2)  # 8 x 8, 2 px patches
    patch_ids = go.turn_quarter(image)[0, 0, ::2, ::2].flatten()
    assert torch.equal(patch_ids.long(), go.turn_token_values(torch.arange(N)[None], GRID)[0])


def test_roll_equivariance_is_zero_on_equivariant_geometry_only():
    g = torch.Generator().manual_seed(1)
    rotation, translation, depth = random_rotations(3, g), torch.randn(3, 1, 3, generator=g), torch.rand(3, N, generator=g)
    geometry = {"rotation": rotation, "translation": translation, "depth": depth}
    turned = {"rotation": go.QUARTER_TURN.T @ rotation, "translation": translation,
              "depth": go.turn_token_values(depth, GRID)}
    assert go.roll_equivariance(geometry, turned, GRID).item() == pytest.approx(0.0, abs=1e-6)
    unchanged = {"rotation": rotation, "translation": translation, "depth": depth}  # the camera did not roll
    assert go.roll_equivariance(geometry, unchanged, GRID).item() > 0.1
    guessed = {"rotation": random_rotations(3, g), "translation": torch.randn(3, 1, 3, generator=g),
               "depth": torch.rand(3, N, generator=g)}
    assert go.roll_equivariance(geometry, guessed, GRID).item() > 0.1


def test_cross_view_consistency_is_zero_when_matched_tokens_share_their_world_point():
    g = torch.Generator().manual_seed(2)
    world = torch.randn(N, 3, generator=g)
    order = torch.randperm(N, generator=g)
    features = torch.eye(N)  # token n of view 0 shows what token order^-1(n) of view 1 shows
    points = torch.stack([world, world[order]])[None]
    feats = torch.stack([features, features[order]])[None]
    assert go.cross_view_consistency(points, feats, 0.01).item() == pytest.approx(0.0, abs=1e-6)
    # the scale of the world is free
    assert go.cross_view_consistency(5 * points, feats, 0.01).item() == pytest.approx(0.0, abs=1e-6)
    elsewhere = torch.stack([world, torch.randn(N, 3, generator=g)])[None]
    wrong = go.cross_view_consistency(elsewhere, feats, 0.01).item()
    assert wrong > 0.5
    assert go.cross_view_consistency(3 * elsewhere, feats, 0.01).item() == pytest.approx(wrong, rel=1e-4)


def test_cross_view_consistency_trains_the_points_not_the_matching():
    points = torch.randn(1, 2, N, 3, requires_grad=True)
    features = torch.randn(1, 2, N, 8, requires_grad=True)
    go.cross_view_consistency(points, features, 0.05).backward()
    assert points.grad.abs().sum() > 0 and features.grad is None


def rolled_half_turn_pair(generator, focal=None):
    """Two views of one instant: view 1 is view 0's camera rolled half a turn about its optical axis, so its
    token at (u, v) shows what view 0's token at (-u, -v) shows. Returns the points, rotations, translations
    and colours of the pair (1 instant), each token of view 0 a random colour."""
    u, v = token_grid_uv(GRID)
    depth = torch.rand(1, N, generator=generator) + 1
    half_turn = go.QUARTER_TURN @ go.QUARTER_TURN
    rotation = random_rotations(1, generator)
    rotations = torch.cat([rotation, half_turn.T @ rotation])
    centre = torch.randn(1, 1, 3, generator=generator)
    depths = torch.cat([depth, go.turn_token_values(go.turn_token_values(depth, GRID), GRID)])
    points = camera_to_world(backproject(u, v, depths[..., None], focal), rotations, centre.expand(2, 1, 3))
    colour = torch.rand(1, 3, *GRID, generator=generator)
    colours = torch.cat([colour, torch.rot90(colour, 2, dims=(-2, -1))])
    return points[None], rotations[None], centre.expand(2, 1, 3)[None], colours[None]


@pytest.mark.parametrize("focal", [None, 2.0])
def test_reprojection_is_zero_when_every_token_lands_on_its_own_colour(focal):
    g = torch.Generator().manual_seed(5)
    points, rotation, translation, colours = rolled_half_turn_pair(g, focal)
    grid, seen = go.project_to_grid(points, rotation, translation, GRID, focal)
    assert seen.all()
    assert go.photometric_reprojection(points, rotation, translation, colours, focal).item() == pytest.approx(0, abs=1e-5)
    # the world's frame and scale are free
    turn = random_rotations(1, g)[0]
    moved = go.photometric_reprojection(3 * points @ turn + 1, rotation @ turn, 3 * translation @ turn + 1, colours, focal)
    assert moved.item() == pytest.approx(0, abs=1e-5)
    # view 1 with view 0's camera: every token lands on the colour of the token opposite
    unrolled = rotation[:, [0, 0]]
    assert go.photometric_reprojection(points, unrolled, translation, colours, focal).item() > 0.1


def test_reprojection_charges_tokens_thrown_out_of_view_as_random_matches_and_trains_the_geometry():
    g = torch.Generator().manual_seed(6)
    points, rotation, translation, colours = rolled_half_turn_pair(g)
    behind = translation.clone()
    behind[:, 1] = translation[:, 1] + 100 * rotation[:, 1, 2]  # camera 1 moved far along its view: all behind it
    _, seen = go.project_to_grid(points, rotation, behind, GRID)
    assert not seen[:, 1, 0].any()
    own = colours.flatten(-2)
    random_match = (own[0, 0, :, :, None] - own[0, 1, :, None, :]).abs().mean(dim=(0, 2)).mean()
    loss = go.photometric_reprojection(points, rotation, behind, colours)
    assert loss.item() >= random_match.item() / 2 > 0.05
    points.requires_grad_(True)
    rotation.requires_grad_(True)
    nudge = euler_to_rotation(torch.tensor([0.05, -0.03, 0.02]))  # a few degrees off: every token still seen
    go.photometric_reprojection(points, rotation @ nudge, translation, colours).backward()
    assert points.grad.abs().sum() > 0 and rotation.grad.abs().sum() > 0


def test_oracle_is_zero_for_any_depth_scale_and_shift_and_any_world_frame():
    g = torch.Generator().manual_seed(3)
    true_depth = torch.rand(6, N, generator=g) + 0.5
    true_depth[0, :3] = float("nan")  # patches that show nothing
    true_rotation = random_rotations(6, g).view(2, 3, 3, 3)
    world = random_rotations(1, g)[0]  # the estimated world frame is arbitrary
    depth = 3 * torch.nan_to_num(true_depth, nan=7.0) - 2
    assert go.oracle_loss(depth, true_depth, true_rotation @ world, true_rotation).item() == pytest.approx(0, abs=1e-5)
    assert go.oracle_loss(torch.rand(6, N, generator=g), true_depth, true_rotation @ world, true_rotation).item() > 0.2
    assert go.oracle_loss(depth, true_depth, random_rotations(6, g).view(2, 3, 3, 3), true_rotation).item() > 0.2
