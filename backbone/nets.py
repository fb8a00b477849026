"""The release's names for the parts of the layer (``backbone.nets``), for code written against it.

The parts themselves are :mod:`backbone.depth`, :mod:`backbone.camera` and :mod:`backbone.geometry`;
the release's constructors took a config object with ``embed_dim``.
"""
import torch
from torch import nn

from .camera import CameraEstimator
from .depth import PseudoDepthEstimator
from .geometry import backproject, camera_to_world, euler_to_rotation

__all__ = ["rotation_tensor", "reverse_camera_props", "uvd_to_xyz", "CameraCoordEstimator", "CameraProps",
           "CameraProjection"]


def rotation_tensor(theta: torch.Tensor, phi: torch.Tensor, psi: torch.Tensor, b: int = 1) -> torch.Tensor:
    """``(b, 3, 3)`` rotations ``Rz(psi) Ry(phi) Rx(theta)`` from ``b`` angles each (see
    :func:`backbone.geometry.euler_to_rotation`)."""
    return euler_to_rotation(torch.stack([theta.reshape(b), phi.reshape(b), psi.reshape(b)], dim=-1))


def reverse_camera_props(rot: torch.Tensor, trans: torch.Tensor):
    """The inverse of a ``(3, 3)`` rotation and ``(1, 3)`` translation, as the release computes it."""
    return rot.T, rot.T @ trans.T


def uvd_to_xyz(u: torch.Tensor, v: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Camera-frame points ``(u d, v d, d)`` (see :func:`backbone.geometry.backproject`)."""
    return backproject(u, v, d)


class CameraCoordEstimator(PseudoDepthEstimator):
    """The pseudo-depth estimator built from a config: ``dim`` 1 predicts depth, 3 the point."""

    def __init__(self, config, dim: int = 3):
        super().__init__(config.embed_dim, pred_depth=dim == 1)


class CameraProps(CameraEstimator):
    """The camera estimator built from a config (``embed_dim``, ``pred_campos_from``)."""

    def __init__(self, config):
        super().__init__(config.embed_dim, getattr(config, "pred_campos_from", "both-sep"))


class CameraProjection(nn.Module):
    """Camera-frame points to the world: ``p @ R + t`` (see :func:`backbone.geometry.camera_to_world`)."""

    def __init__(self, config=None):
        super().__init__()

    def forward(self, p_camera: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        return camera_to_world(p_camera, rot, trans)
