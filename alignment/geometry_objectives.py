"""Objectives on what 3DTRL recovers (pseudo-depth, cameras, world points), added to the alignment
loss with ``--geometry_loss``: two that need no labels and an oracle that trains on the renderer's
ground truth (the upper bound of what right geometry can give).

Conventions are the layer's (see ``backbone.geometry``): a camera-frame token is
``p_cam = (u d, v d, d)`` with x right, y down, z forward, and ``p_world = p_cam R + t`` (row
vectors), so ``R`` is the world-to-camera rotation; the world frame and its scale are arbitrary.

- ``consistency``: the views of one instant see one scene, so a token lifted to the world must land
  where the tokens of another view that show the same thing land. Tokens are matched across views
  by a softmax over the cosine similarity of the backbone's output tokens (not trained by this term:
  otherwise the matching could learn to pair each token with the one at its own pixel position,
  which identical cameras satisfy). The squared distance is divided by the spread of the instant's
  points, so that shrinking the world does not lower it.
- ``reprojection``: a token lifted to the world and projected into another view of the instant (with
  that view's camera and the layer's pinhole) must land where that view shows its colour: the
  photometric error between each token's mean colour and the other view's token colours, sampled
  bilinearly at the projected point. A token that lands behind the other camera or outside its
  image costs what a random token of that image would, so that throwing points away pays nothing.
- ``equivariance``: an image turned a quarter about its centre is the same scene seen by the same
  camera rolled a quarter about its optical axis: its rotation must be ``M^T R`` (``M``:
  :data:`QUARTER_TURN`), its camera centre the same and its depth map the turned depth map.
- ``oracle``: the pseudo-depth against the true depth of each token's patch (each image's depths
  standardised, so any scale and shift is free) and the relative rotation of every two views of an
  instant against the true one.
"""
import argparse
import itertools
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

import model
from backbone import PointEstimator
from backbone.estimator import DEPTH_ACTIVATIONS
from threedtrl.runtime import UserError

GEOMETRY_LOSSES = ("consistency", "reprojection", "equivariance", "oracle")
EPS = 1e-6

# p_cam of the turned image = p_cam @ QUARTER_TURN: torch.rot90(image, 1, dims=(-2, -1)) moves the
# pixel at (u, v) from the centre to (v, -u).
QUARTER_TURN = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def turn_quarter(images: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` images (or token grids) turned a quarter, counter-clockwise as displayed."""
    return torch.rot90(images, 1, dims=(-2, -1))


def turn_token_values(values: torch.Tensor, grid_size: Tuple[int, int]) -> torch.Tensor:
    """``(B, N)`` per-token values in raster order -> the values at the tokens of the turned image."""
    return turn_quarter(values.unflatten(-1, tuple(grid_size))).flatten(-2)


def cross_view_consistency(points: torch.Tensor, features: torch.Tensor, temperature: float) -> torch.Tensor:
    """World points of matched tokens must coincide across the views of an instant.

    Args:
        points: ``(I, K, N, 3)`` world points of the N tokens of K views at I instants.
        features: ``(I, K, N, D)`` what tokens are matched by (cosine similarity; no gradient).
        temperature: of the matching softmax.

    Returns:
        Mean over instants of ``mean_{a != b, n} |p_an - sum_m softmax_m(f_an . f_bm / T) p_bm|^2``
        divided by the instant's mean squared distance of points from their centroid.
    """
    views = points.shape[1]
    if views < 2:
        raise ValueError("cross-view consistency needs at least two views of an instant")
    f = F.normalize(features.detach(), dim=-1)
    match = torch.softmax(torch.einsum("iand,ibmd->iabnm", f, f) / temperature, dim=-1)    # (I, K, K, N, N)
    target = torch.einsum("iabnm,ibmc->iabnc", match, points)                                # (I, K, K, N, 3)
    error = (points[:, :, None] - target).pow(2).sum(-1)                                     # (I, K, K, N)
    pairs = ~torch.eye(views, dtype=torch.bool, device=points.device)
    spread = (points - points.mean(dim=(1, 2), keepdim=True)).pow(2).sum(-1).mean(dim=(1, 2))  # (I,)
    return (error[:, pairs].mean(dim=(1, 2)) / (spread + EPS)).mean()


def project_to_grid(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                    grid_size: Tuple[int, int], focal=None, principal_point=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Where the world points of every view land in the token grid of every view of the same instant.

    Args:
        points: ``(I, K, N, 3)`` world points; rotation ``(I, K, 3, 3)`` and translation ``(I, K, 1, 3)``
            the K cameras (``p_world = p_cam R + t``).
        grid_size: ``(h, w)``; focal, principal_point: the layer's pinhole (``PointEstimator.pinhole``).

    Returns:
        ``grid (I, K_b, K_a, N, 2)``: the points of view a in view b's grid, in ``grid_sample``'s
        coordinates (-1 and 1 are the centres of the outer tokens), and ``seen (I, K_b, K_a, N)``: in
        front of camera b and inside its image (which reaches half a token beyond the outer centres).
    """
    h, w = grid_size
    offset = points[:, None] - translation[:, :, None]                       # (I, K_b, K_a, N, 3)
    cam = offset @ rotation[:, :, None].transpose(-1, -2)                     # camera b's frame
    depth = cam[..., 2]
    plane = cam[..., :2] / depth.clamp(min=EPS).unsqueeze(-1)
    if focal is not None:
        plane = plane * focal
    if principal_point is not None:
        plane = plane + plane.new_tensor(principal_point)
    half = plane.new_tensor([max(w - 1, 1) / 2, max(h - 1, 1) / 2])
    grid = plane / half
    seen = (depth > EPS) & (plane.abs() <= half + 0.5).all(-1)
    return grid, seen


def layer_pinhole(net: torch.nn.Module) -> Tuple:
    """The focal length and principal point of ``net``'s 3DTRL layer (``PointEstimator.pinhole``)."""
    return next(m for m in net.modules() if isinstance(m, PointEstimator)).pinhole()


def photometric_reprojection(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                             colours: torch.Tensor, focal=None, principal_point=None) -> torch.Tensor:
    """Tokens projected into the other views of their instant must land on their own colour.

    Args:
        points, rotation, translation: as :func:`project_to_grid`.
        colours: ``(I, K, C, h, w)`` each token's mean colour (the images pooled to the token grid).

    Returns:
        Mean over instants, ordered view pairs ``a != b`` and tokens of ``|c_a - c_b(proj)|_1 / C``, where
        a token that view b does not see costs the mean over b's tokens of ``|c_a - c_bm|_1 / C``.
    """
    instants, views, channels, h, w = colours.shape
    if views < 2:
        raise ValueError("the reprojection objective needs at least two views of an instant")
    grid, seen = project_to_grid(points, rotation, translation, (h, w), focal, principal_point)
    sampled = torch.stack([F.grid_sample(colours[:, b], grid[:, b], align_corners=True, padding_mode="border")
                           for b in range(views)], dim=1)                     # (I, K_b, C, K_a, N)
    own = colours.flatten(-2)                                                # (I, K, C, N)
    error = (sampled - own.transpose(1, 2)[:, None]).abs().mean(2)         # (I, K_b, K_a, N)
    unseen_cost = (own[:, None, :, :, :, None] - own[:, :, None, :, None, :]).abs().mean(dim=(3, 5))
    error = torch.where(seen, error, unseen_cost.detach())
    pairs = ~torch.eye(views, dtype=torch.bool, device=points.device)
    return error[:, pairs].mean()


def roll_equivariance(geometry: Dict[str, torch.Tensor], turned: Dict[str, torch.Tensor],
                      grid_size: Tuple[int, int]) -> torch.Tensor:
    """The geometry of quarter-turned images against the geometry of the images, turned.

    Args:
        geometry, turned: ``rotation (B, 3, 3)``, ``translation (B, 1, 3)`` and ``depth (B, N)`` of the
            images and of the same images turned (:func:`turn_quarter`).

    Returns:
        ``|R' - M^T R|_F^2 / 8 + |t' - t|^2 / (|t|^2 + |t'|^2) + mean((s(d') - s(turn(d)))^2) / 4``
        averaged over the images, ``s``: each depth map standardised (its scale and shift are free).
        Each term is 0 for equivariant geometry and at most 1.
    """
    expected = QUARTER_TURN.to(geometry["rotation"]).T @ geometry["rotation"]
    rotation = (turned["rotation"] - expected).pow(2).sum(dim=(-2, -1)) / 8
    t, t_turned = geometry["translation"].flatten(1), turned["translation"].flatten(1)
    centre = (t_turned - t).pow(2).sum(-1) / (t.pow(2).sum(-1) + t_turned.pow(2).sum(-1) + EPS)
    every = torch.ones_like(turned["depth"], dtype=torch.bool)
    depth = (standardised(turned["depth"], every)
             - standardised(turn_token_values(geometry["depth"], grid_size), every)).pow(2).mean(-1) / 4
    return (rotation + centre + depth).mean()


def standardised(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``(B, N)`` values minus their mean, over their standard deviation, over the valid entries of
    each row (invalid entries: 0)."""
    count = valid.sum(-1, keepdim=True).clamp(min=1)
    kept = torch.where(valid, values, torch.zeros_like(values))
    mean = kept.sum(-1, keepdim=True) / count
    centred = torch.where(valid, values - mean, torch.zeros_like(values))
    return centred / (centred.pow(2).sum(-1, keepdim=True) / count + EPS).sqrt()


def relative_rotations(rotation: torch.Tensor) -> torch.Tensor:
    """``R_b R_a^T`` of every view pair ``a < b``: ``(I, K, 3, 3)`` -> ``(I, P, 3, 3)``."""
    pairs = list(itertools.combinations(range(rotation.shape[1]), 2))
    a, b = (torch.tensor(index, device=rotation.device) for index in zip(*pairs))
    return rotation[:, b] @ rotation[:, a].transpose(-1, -2)


def oracle_loss(depth: torch.Tensor, true_depth: torch.Tensor, rotation: torch.Tensor,
                true_rotation: torch.Tensor) -> torch.Tensor:
    """Supervision with the renderer's ground truth.

    Args:
        depth, true_depth: ``(B, N)`` pseudo-depth and the true mean depth of each token's patch
            (nan: the patch shows nothing).
        rotation, true_rotation: ``(I, K, 3, 3)`` estimated and true world-to-camera rotations of the
            K views of I instants.

    Returns:
        Mean L1 distance of the standardised depths over the tokens with a true depth, plus the mean
        ``|R_rel - R*_rel|_F^2 / 8`` over the view pairs.
    """
    valid = torch.isfinite(true_depth)
    true_depth = torch.nan_to_num(true_depth)
    gap = (standardised(depth, valid) - standardised(true_depth, valid)).abs()
    depth_term = gap[valid].mean() if valid.any() else depth.sum() * 0
    rotation_term = (relative_rotations(rotation) - relative_rotations(true_rotation)).pow(2).sum(dim=(-2, -1)) / 8
    return depth_term + rotation_term.mean()


# ----------------------------------------------------------------------------- command line

def add_geometry_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of the objectives and of the layer's geometry options, shared by the alignment script
    and the offline pretraining (``tools/pretrain_state.py``)."""
    p.add_argument("--geometry_loss", nargs="+", default=[], choices=GEOMETRY_LOSSES, metavar="OBJECTIVE",
                   help="3DTRL ViT/TnT (alignment: with --loss npairs): add objectives on what the layer "
                        "recovers (docs/geometry.md): "
                        "consistency (world points of tokens matched across the views of an instant coincide), "
                        "reprojection (a token projected into another view of the instant lands on its own "
                        "colour), "
                        "equivariance (a quarter-turned image gives the camera rolled a quarter, the depth map "
                        "turned), oracle (the renderer's depth and relative rotations as targets)")
    p.add_argument("--geometry_weight", type=float, default=1.0, help="weight of the --geometry_loss terms")
    p.add_argument("--match_temperature", type=float, default=0.05,
                   help="--geometry_loss consistency: softmax temperature of the token matching across views")
    p.add_argument("--depth_activation", default="none", choices=DEPTH_ACTIVATIONS,
                   help="3DTRL's pseudo-depth: none (the release's, any sign) or softplus (always positive)")
    p.add_argument("--focal", type=float, default=None,
                   help="3DTRL's focal length in patches (default: the release's, one patch)")
    p.add_argument("--learn_focal", action="store_true",
                   help="3DTRL learns its focal length, starting from --focal (or one patch)")


def check_geometry_args(args: argparse.Namespace) -> None:
    """The 3DTRL geometry options and objectives: on a 3DTRL model, positive numbers; sets
    ``args.trl_geometry``, the layer's options as the model config records them (None: the release's)."""
    geometry = {"depth_activation": args.depth_activation, "focal": args.focal, "learn_focal": args.learn_focal}
    geometry = {k: v for k, v in geometry.items() if v not in ("none", None, False)}
    args.trl_geometry = geometry or None
    if (geometry or args.geometry_loss) and args.model not in model.TRL_MODEL_NAMES:
        raise UserError(f"--geometry_loss, --depth_activation, --focal and --learn_focal need a 3DTRL model, "
                        f"not {args.model}")
    if geometry and not getattr(args, "pred_depth", True):
        raise UserError("--depth_activation, --focal and --learn_focal need --pred_depth 1")
    for name in ("geometry_weight", "match_temperature") + (("focal",) if args.focal is not None else ()):
        if not getattr(args, name) > 0:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
