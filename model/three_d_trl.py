"""The 3DTRL layer: recover tokens in 3D and add a 3D positional embedding.

One implementation serves images and videos. Image tokens are ``(B, P + N, D)``; video
tokens are ``(B, 1 + N * T, D)`` in TimeSformer's ``(h w t)`` order. Since every frame sees
the same CLS token and one camera is estimated per clip, the video case is the image case
with each grid coordinate repeated for the ``T`` frames of its patch.
"""
from typing import Optional, Tuple, Union

import torch
from torch import nn

from backbone import CAMERA_MODES, PointEstimator, TokenGeometry


class ThreeDTRL(nn.Module):
    """3D Token Representation Layer.

    Args:
        dim: token width ``D`` at the insertion point.
        grid_size: token grid ``(h, w)`` the model is built for (other grids work at run time).
        has_cls: whether a CLS token precedes the patch tokens.
        pred_depth: predict a depth per token (True) or the camera-frame point directly.
        pred_campos_from: camera estimator input, one of ``both-sep``, ``both-avg``, ``cls``, ``tok``.
        cat: concatenation variant (``proj_world`` over ``[token, world point]``, no 2D term).
        x2d: skip re-adding the backbone's 2D position embedding.
        zero_init_rotation: start with ``R = I`` (the video model's initialisation).
        depth_activation, focal, principal_point, learn_focal: geometry options, off by default (the
            release's layer): a positive depth ("softplus"), a pinhole camera given or learned; see
            :class:`backbone.PointEstimator`.

    The release's form ``ThreeDTRL(config)`` also builds it: ``config`` has ``embed_dim``,
    ``input_size`` ``(C, H, W)`` and ``patch_size`` (the grid is ``H / patch_size`` by
    ``W / patch_size``) and may have ``has_cls``, ``pred_depth`` and ``pred_campos_from``.
    """

    def __init__(self, dim, grid_size: Optional[Tuple[int, int]] = None, has_cls: bool = True,
                 pred_depth: bool = True, pred_campos_from: str = "both-sep", cat: bool = False, x2d: bool = False,
                 zero_init_rotation: bool = False, depth_activation: str = "none", focal: Optional[float] = None,
                 principal_point: Optional[Tuple[float, float]] = None, learn_focal: bool = False):
        if not isinstance(dim, int):  # the release's ThreeDTRL(config)
            config = dim
            _, height, width = config.input_size
            dim, grid_size = config.embed_dim, (height // config.patch_size, width // config.patch_size)
            has_cls = getattr(config, "has_cls", has_cls)
            pred_depth = getattr(config, "pred_depth", pred_depth)
            pred_campos_from = getattr(config, "pred_campos_from", pred_campos_from)
        super().__init__()
        if pred_campos_from not in CAMERA_MODES:
            raise ValueError(f"unknown camera mode {pred_campos_from!r}; choose one of {', '.join(CAMERA_MODES)}")
        if not has_cls and pred_campos_from != "tok":
            raise ValueError(f"camera mode {pred_campos_from!r} needs a CLS token; use 'tok' for models without one")
        self.has_cls = has_cls
        self.cat = cat
        self.x2d = x2d
        if has_cls:
            self.pos_emb_world_cls = nn.Parameter(torch.randn(1, 1, dim))
        if cat:
            self.proj_world = nn.Sequential(nn.Linear(dim + 3, dim), nn.ReLU(), nn.Linear(dim, dim))
        else:
            self.pos_emb_world = nn.Sequential(nn.Linear(3, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.estimator = PointEstimator(dim, grid_size, pred_depth, pred_campos_from, zero_init_rotation,
                                        depth_activation, focal, principal_point, learn_focal)

    def forward(self, x: torch.Tensor, grid_size=None, pe2d: Optional[torch.Tensor] = None,
                num_frames: int = 1, return_geometry: bool = False, x2d: Optional[bool] = None
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, TokenGeometry]]:
        """Add the 3D positional embedding of every token.

        Args:
            x: ``(B, P + N * T, D)`` tokens, ``P`` = 1 with CLS else 0, patches in ``(h w t)`` order.
            grid_size: ``(h, w)`` of the token grid, ``N = h * w`` (None: the grid it was built for).
                The release's call ``forward(x, pos_emb_2d, x2d=...)`` also works: a tensor here is
                ``pe2d``.
            pe2d: ``(1, P + N, D)`` or ``(1, N, D)`` learned 2D position embedding, added again
                (ignored when ``x2d`` or ``cat``); None for backbones without one.
            num_frames: ``T`` (1 for images).
            return_geometry: also return the recovered :class:`TokenGeometry`.
            x2d: overrides the ``x2d`` it was built with, for this call (the release's argument).

        Returns:
            ``(B, P + N * T, D)`` tokens, and the geometry when asked.
        """
        if grid_size is None or isinstance(grid_size, torch.Tensor):
            pe2d, grid_size = (grid_size if pe2d is None else pe2d), self.estimator.grid_size
        skip_2d = self.x2d if x2d is None else x2d
        prefix = 1 if self.has_cls else 0
        num_patches = grid_size[0] * grid_size[1]
        if x.shape[1] != prefix + num_patches * num_frames:
            raise ValueError(f"3DTRL got {x.shape[1]} tokens, expected {prefix} + {grid_size[0]}x{grid_size[1]}"
                             f" x {num_frames} frame(s)")
        coord, points_cam, rotation, translation, points_world = self.estimator(x, prefix, grid_size, num_frames)
        if self.cat:
            emb = self.proj_world(torch.cat([x[:, prefix:], points_world], dim=-1))
        else:
            emb = self.pos_emb_world(points_world)
        cls_emb = self.pos_emb_world_cls if self.has_cls else None
        if pe2d is not None and not (skip_2d or self.cat):
            pe_cls, pe_patch = self._split_pe2d(pe2d, num_patches, num_frames)
            emb = emb + pe_patch
            if self.has_cls and pe_cls is not None:
                cls_emb = cls_emb + pe_cls
        if self.has_cls:
            emb = torch.cat([cls_emb.expand(x.shape[0], -1, -1), emb], dim=1)
        out = x + emb
        if not return_geometry:
            return out
        return out, self._geometry(coord, points_cam, rotation, translation, points_world, grid_size, num_frames)

    @staticmethod
    def _split_pe2d(pe2d: torch.Tensor, num_patches: int, num_frames: int
                    ) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
        """``(1, P + N, D)`` or ``(1, N, D)`` -> CLS part ``(1, 1, D)`` (or None) and patch part
        ``(1, N * T, D)`` repeated over frames in ``(h w t)`` order."""
        patch = pe2d[:, pe2d.shape[1] - num_patches:]
        if num_frames > 1:
            patch = patch.repeat_interleave(num_frames, dim=1)
        return (pe2d[:, :1] if pe2d.shape[1] > num_patches else None), patch

    def _geometry(self, coord, points_cam, rotation, translation, points_world, grid_size, num_frames) -> TokenGeometry:
        def per_frame(t: torch.Tensor) -> torch.Tensor:  # (B, N*T, C) in (h w t) order -> (B, T, N, C)
            return t.unflatten(1, (-1, num_frames)).transpose(1, 2)
        depth = coord[..., -1:]
        return TokenGeometry(per_frame(depth).squeeze(-1), per_frame(points_cam), rotation, translation,
                             per_frame(points_world), tuple(grid_size))


def resolve_trl_depth(trl_depth: Optional[int], npl_depth: Optional[int]) -> Optional[int]:
    """``trl_depth``, or the release's name for it, ``npl_depth``; both given must agree."""
    if npl_depth is None:
        return trl_depth
    if trl_depth is not None and trl_depth != npl_depth:
        raise ValueError(f"trl_depth {trl_depth} and npl_depth {npl_depth} given with different values")
    return npl_depth


def trl_kwargs(kwargs: dict) -> dict:
    """Pop the 3DTRL constructor arguments (``npl_depth`` accepted for ``trl_depth``) from ``kwargs``."""
    depth = resolve_trl_depth(kwargs.pop("trl_depth", None), kwargs.pop("npl_depth", None))
    names = ("pred_depth", "pred_campos_from", "cat", "x2d", "trl_geometry")
    return dict({name: kwargs.pop(name) for name in names if name in kwargs},
                **({"trl_depth": depth} if depth is not None else {}))
