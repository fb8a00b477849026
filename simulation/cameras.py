"""Cameras: view and projection matrices (pybullet's OpenGL convention) and their conversion to
the pinhole convention of the ground truth (x right, y down, z forward)."""
import math
from typing import Sequence

import numpy as np

_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera (y up, looking along -z) -> x right, y down, z forward


def orbit_view(target: Sequence[float], distance: float, yaw: float, pitch: float) -> list:
    """View matrix of a camera ``distance`` metres from ``target`` at ``yaw`` / ``pitch`` degrees (z up)."""
    import pybullet as pb

    return pb.computeViewMatrixFromYawPitchRoll(list(target), distance, yaw, pitch, 0.0, 2)


def look_at_view(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 0.0, 1.0)) -> list:
    """View matrix of a camera at ``eye`` looking at ``target``."""
    import pybullet as pb

    return pb.computeViewMatrix(list(eye), list(target), list(up))


def projection(fov_deg: float, near: float, far: float) -> list:
    """Square-image perspective projection matrix."""
    import pybullet as pb

    return pb.computeProjectionMatrixFOV(fov_deg, 1.0, near, far)


def intrinsics(size: int, fov_deg: float) -> np.ndarray:
    """``(3, 3)`` pinhole matrix of square ``size`` px frames, for pixel (c, r) at (c + 0.5, r + 0.5).

    TinyRenderer samples each pixel at a corner of the OpenGL pixel grid and flips the rows, so the
    principal point is half a pixel right of and above the image centre (measured against the depth
    of the floor, tests/test_geometry_eval.py)."""
    focal = size / 2 / math.tan(math.radians(fov_deg) / 2)
    return np.array([[focal, 0.0, size / 2 + 0.5], [0.0, focal, size / 2 - 0.5], [0.0, 0.0, 1.0]])


def world_to_camera(view: Sequence[float]) -> np.ndarray:
    """``(4, 4)`` world-to-camera transform (x right, y down, z forward) of a pybullet view matrix."""
    return _GL_TO_CV @ np.asarray(view, dtype=np.float64).reshape(4, 4).T


def metric_depth(zbuffer: np.ndarray, near: float, far: float) -> np.ndarray:
    """Depth along the optical axis in metres from pybullet's [0, 1] depth buffer (inf at the far plane)."""
    depth = far * near / (far - (far - near) * zbuffer)
    return np.where(zbuffer >= 1.0, np.inf, depth)


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres, 0 where there is nothing (inf) or beyond 65.535 m."""
    mm = np.round(np.where(np.isfinite(depth), depth, 0.0) * 1000.0)
    return np.where(mm > 65535, 0, mm).astype(np.uint16)
