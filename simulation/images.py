"""Writing rendered frames: OpenCV's ``imwrite`` reports failure by returning False, which would
leave an empty file that a re-run takes for a finished image."""
import cv2
import numpy as np

from threedtrl.runtime import UserError


def write_image(path: str, rgb: np.ndarray, params=()) -> None:
    """Write ``(H, W, 3)`` uint8 RGB to ``path`` (format from the extension); a one-line
    :class:`UserError` when it cannot be written (a full disk, an unwritable folder)."""
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[:, :, ::-1]), list(params)):
        raise UserError(f"cannot write image {path} (no space left on the device, or the folder is not writable)")
