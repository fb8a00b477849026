"""Parts of the 3DTRL layer: pseudo-depth estimator, camera estimator, projection."""
from .camera import CAMERA_MODES, CameraEstimator
from .depth import PseudoDepthEstimator
from .estimator import PointEstimator, TokenGeometry
from .geometry import backproject, camera_to_world, euler_to_rotation, token_grid_uv

__all__ = [
    "CAMERA_MODES", "CameraEstimator", "PseudoDepthEstimator", "PointEstimator", "TokenGeometry",
    "backproject", "camera_to_world", "euler_to_rotation", "token_grid_uv",
]
