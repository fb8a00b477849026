"""Token-to-3D estimator: pseudo-depth, camera pose and world coordinates of patch tokens."""
import math
from typing import NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .camera import CameraEstimator
from .depth import PseudoDepthEstimator
from .geometry import backproject, camera_to_world, token_grid_uv


DEPTH_ACTIVATIONS = ("none", "softplus")


class TokenGeometry(NamedTuple):
    """What 3DTRL recovers for the tokens of one forward pass (T = 1 for images).

    depth: ``(B, T, N)`` pseudo-depth (the camera-frame z when ``pred_depth=False``).
    points_cam: ``(B, T, N, 3)`` camera-frame points.
    rotation: ``(B, 3, 3)`` and translation: ``(B, 1, 3)``, one camera per image or clip.
    points_world: ``(B, T, N, 3)`` world points.
    grid_size: ``(h, w)`` token grid, ``N = h * w`` in raster order.
    """
    depth: torch.Tensor
    points_cam: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    points_world: torch.Tensor
    grid_size: Tuple[int, int]


class PointEstimator(nn.Module):
    """Recovers world coordinates of patch tokens: pseudo-depth, back-projection, camera, world frame.

    ``u`` and ``v`` are kept as persistent buffers for the grid the model is built for, as
    in the release's checkpoints; any other grid received at run time is computed on the fly.

    Geometry options (the defaults are the release's: an unbounded depth, a focal length of one
    patch, the principal point at the grid's centre): ``depth_activation`` "softplus" makes every
    depth positive; ``focal`` (patches) and ``principal_point`` ``(cu, cv)`` (patches from the grid's
    centre) give the pinhole camera of :func:`~backbone.geometry.backproject`; ``learn_focal`` learns
    the focal length from ``focal`` (or one patch), stored as ``log_focal``.
    """

    def __init__(self, dim: int, grid_size: Tuple[int, int], pred_depth: bool = True,
                 pred_campos_from: str = "both-sep", zero_init_rotation: bool = False,
                 depth_activation: str = "none", focal: Optional[float] = None,
                 principal_point: Optional[Tuple[float, float]] = None, learn_focal: bool = False):
        super().__init__()
        if depth_activation not in DEPTH_ACTIVATIONS:
            raise ValueError(f"unknown depth_activation {depth_activation!r}; choose one of "
                             f"{', '.join(DEPTH_ACTIVATIONS)}")
        if focal is not None and not focal > 0:
            raise ValueError(f"focal must be positive, got {focal}")
        if (depth_activation != "none" or focal is not None or principal_point is not None or learn_focal) \
                and not pred_depth:
            raise ValueError("the depth and camera options need pred_depth=True")
        self.grid_size = tuple(grid_size)
        self.pred_depth = pred_depth
        self.depth_activation = depth_activation
        self.principal_point = tuple(principal_point) if principal_point is not None else None
        self.focal = focal
        if learn_focal:
            self.log_focal = nn.Parameter(torch.tensor(math.log(focal or 1.0)))
        u, v = token_grid_uv(self.grid_size)
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        # The pseudo-depth estimator and the camera estimator, under the release's state-dict names
        # (``camera_coord``, ``camera_props``), so that its checkpoints load as they are.
        self.camera_coord = PseudoDepthEstimator(dim, pred_depth)
        self.camera_props = CameraEstimator(dim, pred_campos_from, zero_init_rotation)

    def grid_uv(self, grid_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(N, 1)`` coordinates of the tokens of ``grid_size``."""
        if tuple(grid_size) == self.grid_size:
            return self.u, self.v
        return token_grid_uv(grid_size, device=self.u.device, dtype=self.u.dtype)

    def pinhole(self) -> Tuple[Optional[Union[float, torch.Tensor]], Optional[Tuple[float, float]]]:
        """The focal length (None: one patch; a tensor when learned) and principal point (None: the grid's
        centre) that lift the tokens, as :func:`~backbone.geometry.backproject` takes them."""
        return (self.log_focal.exp() if hasattr(self, "log_focal") else self.focal), self.principal_point

    def forward(self, tokens: torch.Tensor, num_prefix_tokens: int, grid_size: Tuple[int, int],
                num_frames: int = 1) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """World points of the patch tokens.

        Args:
            tokens: ``(B, P + N * T, D)``: ``P`` prefix (CLS) tokens, then the patch tokens in
                ``(h w t)`` order (time fastest).
            num_prefix_tokens: ``P`` (0 or 1).
            grid_size: ``(h, w)`` with ``h * w = N``.
            num_frames: ``T``; one camera is estimated per sample from all its tokens.

        Returns:
            coord ``(B, N*T, 1 or 3)``, points_cam ``(B, N*T, 3)``, rotation ``(B, 3, 3)``,
            translation ``(B, 1, 3)``, points_world ``(B, N*T, 3)``.
        """
        # The per-token MLP runs on the whole contiguous sequence; the prefix outputs are dropped.
        coord = self.camera_coord(tokens)[:, num_prefix_tokens:]
        if self.depth_activation == "softplus":
            coord = F.softplus(coord)
        if self.pred_depth:
            u, v = self.grid_uv(grid_size)
            if num_frames > 1:
                u, v = u.repeat_interleave(num_frames, dim=0), v.repeat_interleave(num_frames, dim=0)
            points_cam = backproject(u, v, coord, *self.pinhole())
        else:
            points_cam = coord
        rotation, translation = self.camera_props(tokens, num_prefix_tokens)
        return coord, points_cam, rotation, translation, camera_to_world(points_cam, rotation, translation)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # u and v are fixed functions of the grid: keep this model's own, whatever the file holds.
        for name in ("u", "v"):
            state_dict[prefix + name] = getattr(self, name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
