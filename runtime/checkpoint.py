"""Checkpoints: written atomically, read with one error style, and never able to run code."""
import argparse
import io
import json
import math
import os
import pickle
from typing import Any, Dict, Sequence

import numpy as np
import torch

from .errors import UserError
from .files import atomic_write

# Besides tensors and plain Python data, the only types a checkpoint may hold: the training arguments
# that timm's CheckpointSaver (and so checkpoints of imagenet_train.py) store, and NumPy scalars (with
# their dtypes), which older checkpoints of this project hold in their metric histories. Rebuilding
# these runs no code of the file's choosing.
CHECKPOINT_SAFE_GLOBALS = (argparse.Namespace, np._core.multiarray.scalar, np.dtype,
                           *(type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")))


def check_finite_loss(loss: torch.Tensor, where: str, advice: str = "lower the learning rate") -> None:
    """The one non-finite policy of every training loop, checked at every step before the backward
    pass: a :class:`UserError` when the step's loss is NaN or infinite, so that no update from it is
    applied and nothing after it is saved."""
    if not torch.isfinite(loss.detach()).all():
        raise UserError(f"training diverged: the loss is {loss.detach().float().mean().item()} at {where}; "
                        f"the last checkpoint is kept; {advice}")


def check_finite(values: Dict[str, float], when: str) -> None:
    """A :class:`UserError` naming the first non-finite metric of ``values`` (e.g. a validation loss
    of NaN after the weights diverged in an epoch's last steps), so that nothing of it is saved."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"training diverged: {name} is {value} {when}; the last checkpoint is kept; "
                            f"lower the learning rate or clip the gradients")


def check_finite_weights(model: torch.nn.Module, when: str) -> None:
    """A :class:`UserError` when a parameter of ``model`` holds NaN or infinity (never saved)."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param.detach()).all():
            raise UserError(f"training diverged: {name} holds non-finite values {when}; the last checkpoint is kept; "
                            f"lower the learning rate or clip the gradients")


def save_checkpoint_atomic(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint_file(path: str, what: str = "checkpoint", keys: Sequence[str] = ()) -> Any:
    """``torch.load`` of a file a user names, with ``weights_only=True``: only tensors, plain Python
    data and :data:`CHECKPOINT_SAFE_GLOBALS` are rebuilt, so nothing in the file can run code; a
    ``.safetensors`` file is read by :func:`load_safetensors`. With ``keys``, the file must be a dict
    that holds them (a checkpoint of the calling task).

    Raises:
        UserError: the file is missing, unreadable (truncated, damaged, foreign), holds other objects
            (the message names them) or lacks ``keys``; always one line.
    """
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    if path.endswith(".safetensors"):
        obj = load_safetensors(path, what)
    else:
        obj = _torch_load(path, what)
    missing = [key for key in keys if not isinstance(obj, dict) or key not in obj]
    if missing:
        raise UserError(f"{what} {path} is not of the expected kind (no {', '.join(missing)})")
    return obj


def _torch_load(path: str, what: str) -> Any:
    try:
        with torch.serialization.safe_globals(list(CHECKPOINT_SAFE_GLOBALS)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (unsafe content, or a truncated, foreign or damaged file)
        names = _unsafe_globals(path) if isinstance(err, pickle.UnpicklingError) else []
        if names:
            raise UserError(f"{what} {path} holds objects other than tensors and plain data "
                            f"({', '.join(names)}); refused, since loading them could run code") from None
        raise UserError(f"cannot read {what} {path}: {type(err).__name__} (truncated, damaged or not a "
                        f"PyTorch file)") from None
    return obj


def save_safetensors_atomic(tensors: Dict[str, torch.Tensor], info: Dict[str, Any], path: str) -> None:
    """Weights as safetensors (tensors only: nothing in the file can run code), with ``info`` (plain
    data, e.g. ``model_cfg``) as JSON in the header's metadata; written atomically."""
    from safetensors.torch import save_file

    metadata = {key: json.dumps(value) for key, value in info.items()}
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_safetensors(path: str, what: str = "weights file") -> Dict[str, Any]:
    """A file of :func:`save_safetensors_atomic` as a checkpoint: ``{"model": tensors, **info}``
    (the tensors alone when the header holds no metadata, as in files of other projects)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
            metadata = f.metadata() or {}
        info = {key: json.loads(value) for key, value in metadata.items()}
    except Exception as err:  # noqa: BLE001  (a truncated, damaged or foreign file)
        raise UserError(f"cannot read {what} {path}: {type(err).__name__} (truncated, damaged or not a "
                        f"safetensors file)") from None
    return {"model": tensors, **info} if info else tensors


def _unsafe_globals(path: str) -> list:
    """Classes and functions the file would have to rebuild beyond those allowed (found by reading
    the pickle's opcodes, not by running it)."""
    try:
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in CHECKPOINT_SAFE_GLOBALS}
        return [name for name in torch.serialization.get_unsafe_globals_in_checkpoint(path) if name not in allowed]
    except Exception:  # noqa: BLE001  (not a zip checkpoint: the caller reports the load error)
        return []


class Unread:
    """What :func:`load_plain_pickle` puts where a pickle would build an object of some class or call
    a function: nothing of the file's is constructed or called, and the object's data is dropped."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass

    def __setitem__(self, key, value):
        pass

    def __call__(self, *args, **kwargs):  # a placeholder a pickle calls (protocols 2-3 keyword constructors)
        return Unread()

    def __repr__(self):
        return "<object not read>"


class _PlainUnpickler(pickle.Unpickler):
    """Builds builtin containers, strings and numbers (and, by name, the harmless builtins that older
    pickle protocols need for sets and bytes, and ``OrderedDict``); every other class or function the
    pickle names becomes :class:`Unread`, which runs nothing."""

    _HARMLESS = {("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set"),
                 ("__builtin__", "frozenset"), ("_codecs", "encode"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._HARMLESS:
            return super().find_class(module, name)
        return Unread

    def persistent_load(self, pid):
        return Unread()


def load_plain_pickle(path: str) -> Any:
    """Read a pickle's lists, dicts, tuples, sets, strings, bytes, numbers, booleans and None; any
    other object in it (a tensor, an array, an instance of some class) is an :class:`Unread` and is
    never constructed, so reading the file runs none of its code. Split files of other projects keep
    such objects beside the fields read here (CARL's Pouring ``train.pkl`` holds each video's frame
    labels as a tensor)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except Exception as err:  # noqa: BLE001  (truncated or not a pickle)
        raise UserError(f"cannot read {path}: {type(err).__name__}") from None
