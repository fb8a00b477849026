"""Geometry of 3DTRL: token grid coordinates, back-projection, rotation, camera-to-world.

Row vectors throughout: a point is a ``(..., 3)`` row and is transformed as ``p @ R + t``.
"""
from typing import Tuple

import torch


def token_grid_uv(grid_size: Tuple[int, int], device=None, dtype=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Centred image-plane coordinates of the tokens of an ``h x w`` grid, in patch units.

    Tokens are in raster (row-major) order; ``u = c - (w - 1) / 2``, ``v = r - (h - 1) / 2``.

    Returns:
        u, v: each ``(h * w, 1)``.
    """
    h, w = grid_size
    cols = torch.arange(w, device=device, dtype=dtype) - (w - 1) / 2
    rows = torch.arange(h, device=device, dtype=dtype) - (h - 1) / 2
    u = cols.repeat(h).unsqueeze(1)
    v = rows.repeat_interleave(w).unsqueeze(1)
    return u, v


def backproject(u: torch.Tensor, v: torch.Tensor, depth: torch.Tensor, focal=None, principal_point=None
                ) -> torch.Tensor:
    """Camera-frame points of tokens with pseudo-depth ``d`` (x right, y down, z along the view):
    ``(u d, v d, d)``, the release's (a focal length of one patch, the principal point at the grid's
    centre), or with a pinhole camera of ``focal`` (in patches) and ``principal_point`` ``(cu, cv)``
    (patches from the grid's centre) ``((u - cu) d / f, (v - cv) d / f, d)``.

    Args:
        u, v: ``(N, 1)`` token grid coordinates.
        depth: ``(B, N, 1)`` pseudo-depth.
        focal: None, a number or a scalar tensor (a learned focal length).
        principal_point: None or ``(cu, cv)``.

    Returns:
        ``(B, N, 3)`` points in the camera frame.
    """
    if principal_point is not None:
        u, v = u - principal_point[0], v - principal_point[1]
    if focal is not None:
        u, v = u / focal, v / focal
    return torch.cat([u * depth, v * depth, depth], dim=-1)


def euler_to_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Batched rotation ``R = Rz(psi) @ Ry(phi) @ Rx(theta)`` from Euler angles.

    The matrices are the release's: ``Rx`` and ``Ry`` are the textbook ones, ``Rz`` is the
    transpose of the textbook one (``[[c, s, 0], [-s, c, 0], [0, 0, 1]]``). The product is
    written out in closed form, so no constant tensor is allocated and there is no loop.

    Args:
        angles: ``(B, 3)`` as ``(theta, phi, psi)``.

    Returns:
        ``(B, 3, 3)`` rotation matrices.
    """
    cos, sin = torch.cos(angles), torch.sin(angles)
    ct, cp, cs = cos.unbind(-1)
    st, sp, ss = sin.unbind(-1)
    entries = [
        cs * cp, cs * sp * st + ss * ct, cs * sp * ct - ss * st,
        -ss * cp, -ss * sp * st + cs * ct, -ss * sp * ct - cs * st,
        -sp, cp * st, cp * ct,
    ]
    return torch.stack(entries, dim=-1).unflatten(-1, (3, 3))


def camera_to_world(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Move camera-frame points into the world frame: ``p @ R + t``.

    Args:
        points: ``(B, N, 3)``.
        rotation: ``(B, 3, 3)``.
        translation: ``(B, 1, 3)``.

    Returns:
        ``(B, N, 3)`` world points.
    """
    return torch.baddbmm(translation, points, rotation)
