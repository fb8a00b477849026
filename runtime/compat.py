"""Make torchvision (and hence timm) importable next to a torch build it was not compiled for.

The torchvision wheel on PyPI is a CUDA build. Next to a CPU-only torch its compiled
extension cannot be loaded, and ``import torchvision`` then fails while registering the
fake kernels of ``torchvision::nms``. Defining the two operator schemas that registration
expects is enough for everything this project uses (models, transforms, datasets).

Import this module before the first import of torchvision or timm. Where the extension
loads (a matching torch/torchvision pair) nothing is changed.
"""
import ctypes
import glob
import importlib.util
import os
import sys

import torch

_LIBRARIES = []


def _torchvision_extension():
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    found = glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so"))
    return found[0] if found else None


def ensure_torchvision_importable():
    """Define the torchvision operator schemas when its compiled extension cannot load."""
    if "torchvision" in sys.modules or _LIBRARIES:
        return
    extension = _torchvision_extension()
    if extension is None:
        return
    try:
        ctypes.CDLL(extension)
    except OSError:
        # A fragment, not a definition, of the namespace: another library may have opened it already,
        # and an operator it defined already is left as it is.
        library = torch.library.Library("torchvision", "FRAGMENT")
        for name in ("nms", "qnms"):
            if not _has_operator(name):
                library.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARIES.append(library)


def _has_operator(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


ensure_torchvision_importable()
