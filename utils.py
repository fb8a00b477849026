"""Shared utilities: seeding, a small config, meters, atomic files, safe checkpoint reading, CLI errors,
alignment metrics."""
import argparse
import glob
import io
import json
import os
import pickle
import random
import sys
import tempfile
from typing import Any, Callable, Iterable, Optional

import re

import numpy as np
import torch
import yaml


# ----------------------------------------------------------------------------- reproducibility

def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally ask torch for deterministic kernels."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


# ----------------------------------------------------------------------------- errors

class UserError(Exception):
    """A problem with the user's input (files, flags, config): reported in one line, no traceback."""


def user_message(err: BaseException) -> str:
    """The one-line message of a :class:`UserError`, also when a DataLoader worker raised it (the
    loader re-raises it with the worker's traceback in front of the original message)."""
    lines = str(err).strip().splitlines()
    if len(lines) > 1 and "Original Traceback" in str(err):
        return lines[-1].split(": ", 1)[-1]
    return lines[0] if lines else type(err).__name__


def run_cli(main: Callable[[], Any]) -> None:
    """Run ``main``; a :class:`UserError` prints ``error: <message>`` to stderr and exits with 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


def stop_with_launcher() -> None:
    """In a process started by a launcher (torchrun): ask Linux to send SIGTERM to this process when
    the launcher dies, however it dies (``kill -9`` included), so no worker trains on alone.
    Elsewhere, and on other systems, this does nothing."""
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    import ctypes
    import signal

    launcher = os.getppid()
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != launcher:  # the launcher died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


# ----------------------------------------------------------------------------- compilation

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_options(backend: str, mode: Optional[str] = None) -> None:
    """Reject an unknown ``torch.compile`` backend or mode in one line."""
    import torch._dynamo

    backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        raise UserError(f"unknown torch.compile backend {backend!r}; choose one of {', '.join(sorted(backends))}")
    if mode is not None and mode not in COMPILE_MODES:
        raise UserError(f"unknown torch.compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")


def compile_model(module: torch.nn.Module, backend: str = "inductor", mode: Optional[str] = None) -> torch.nn.Module:
    """``torch.compile(module)`` with checked options. The 3DTRL models compile whole (no graph
    breaks), forward and backward; the first steps are slow while the graphs are built.
    Checkpoints store the original module's weights (``timm.utils.unwrap_model``)."""
    check_compile_options(backend, mode)
    return torch.compile(module, backend=backend, mode=mode)


# ----------------------------------------------------------------------------- config

class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3``-style numbers (no dot) as floats, as YAML 1.2 does."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse YAML text; numbers such as ``1e-3`` are floats (plain PyYAML reads them as strings)."""
    return yaml.load(text, Loader=_YamlLoader)


def _checked_value(key: str, default: Any, value: Any) -> Any:
    """``value`` for a key whose default is ``default``: of the default's type (an int is taken
    where a float is expected; a default of None takes anything), else a :class:`UserError`."""
    if default is None or (value is None and isinstance(default, (list, tuple))):
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        expected = "true or false" if isinstance(default, bool) else f"a {type(default).__name__}"
        raise UserError(f"{key} must be {expected}, got {value!r}")
    return value


class Config(dict):
    """A nested dict with attribute access, YAML loading and dotted overrides.

    Overrides may only set keys that exist (a typo is an error, not a new key) and must have the
    type of the key's default (checked in :func:`_checked_value`).
    """

    def __init__(self, data: Optional[dict] = None):
        super().__init__()
        for key, value in (data or {}).items():
            self[key] = Config(value) if isinstance(value, dict) else value

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @classmethod
    def from_yaml(cls, path: str) -> "Config":
        if not os.path.isfile(path):
            raise UserError(f"config file not found: {path}")
        with open(path) as f:
            try:
                data = load_yaml(f.read()) or {}
            except yaml.YAMLError as err:
                raise UserError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise UserError(f"config file {path} must hold a mapping of keys to values")
        return cls(data)

    def merge(self, other: dict, prefix: str = "") -> "Config":
        """Recursively update from ``other``; unknown keys raise :class:`UserError`."""
        for key, value in other.items():
            if key not in self:
                raise UserError(f"unknown config key: {prefix}{key}")
            if isinstance(self[key], Config) and isinstance(value, dict):
                self[key].merge(value, prefix=f"{prefix}{key}.")
            else:
                self[key] = Config(value) if isinstance(value, dict) else _checked_value(
                    f"{prefix}{key}", self[key], value)
        return self

    def merge_list(self, pairs: Iterable[str]) -> "Config":
        """Apply ``["A.B", "value", ...]`` overrides; values are parsed as YAML scalars/lists."""
        pairs = list(pairs)
        if len(pairs) % 2:
            raise UserError(f"overrides must be KEY VALUE pairs, got an odd number: {' '.join(pairs)}")
        for dotted, raw in zip(pairs[::2], pairs[1::2]):
            node = self
            keys = dotted.split(".")
            for key in keys[:-1]:
                if not isinstance(node, Config) or key not in node:
                    raise UserError(f"unknown config key: {dotted}")
                node = node[key]
            if not isinstance(node, Config) or keys[-1] not in node:
                raise UserError(f"unknown config key: {dotted}")
            try:
                value = load_yaml(raw) if isinstance(raw, str) else raw
            except yaml.YAMLError as err:
                raise UserError(f"value of {dotted} is not a plain YAML value: {str(err).splitlines()[0]}") from None
            node[keys[-1]] = _checked_value(dotted, node[keys[-1]], value)
        return self

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else v for k, v in self.items()}


# ----------------------------------------------------------------------------- meters

class AverageMeter:
    """Running sum, count and average of a scalar."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.val, self.sum, self.count = 0.0, 0.0, 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = float(val)
        self.sum += float(val) * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(self.count, 1)


# ----------------------------------------------------------------------------- atomic files

def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    Readers never see a half-written file; on failure nothing is left behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stale_temporaries(directory: str) -> None:
    """Delete the ``.tmp-*`` files an interrupted :func:`atomic_write` left in ``directory``
    (called by the writers at start-up, before they write there)."""
    for path in glob.glob(os.path.join(glob.escape(directory), ".tmp-*")):
        if os.path.isfile(path):
            os.remove(path)


def check_output_dir(path: str) -> None:
    """Without creating anything: a :class:`UserError` unless ``path`` is, or can be made as, a
    writable folder (its nearest existing ancestor is a writable folder)."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to output folder {path}: {existing} is not a writable folder")


def prepare_output_dir(path: str) -> str:
    """Create the output folder ``path`` if needed (a one-line :class:`UserError` when it cannot be
    made or written) and remove the temporary files an interrupted atomic write left there."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".tmp-probe")
        probe.close()
    except OSError as err:
        raise UserError(f"cannot write to output folder {path}: {err.strerror or type(err).__name__}") from None
    remove_stale_temporaries(path)
    return path


def refuse_foreign_folder(folder: str, manifest: str) -> None:
    """A renderer writes only into a new or empty folder, or one that holds its ``manifest`` (its own
    earlier output, which it completes): a folder of someone else's files is refused, not mixed into."""
    if os.path.isdir(folder) and os.listdir(folder) and not os.path.isfile(os.path.join(folder, manifest)):
        raise UserError(f"{folder} holds files this renderer did not write (no {manifest}); "
                        f"render into a new or empty folder")


def save_checkpoint_atomic(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_json_atomic(obj: Any, path: str) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    atomic_write(path, write)


# ----------------------------------------------------------------------------- reading user files safely

# Besides tensors and plain Python data, the only types a checkpoint may hold: the training arguments
# that timm's CheckpointSaver (and so checkpoints of imagenet_train.py) store, and NumPy scalars (with
# their dtypes), which older checkpoints of this project hold in their metric histories. Rebuilding
# these runs no code of the file's choosing.
CHECKPOINT_SAFE_GLOBALS = (argparse.Namespace, np._core.multiarray.scalar, np.dtype,
                           *(type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")))


def load_checkpoint_file(path: str, what: str = "checkpoint") -> Any:
    """``torch.load`` of a file a user names, with ``weights_only=True``: only tensors, plain Python
    data and :data:`CHECKPOINT_SAFE_GLOBALS` are rebuilt, so nothing in the file can run code.

    Raises:
        UserError: the file is missing, unreadable or holds other objects (the message names them).
    """
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(list(CHECKPOINT_SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (unsafe content, or a truncated, foreign or damaged file)
        names = _unsafe_globals(path) if isinstance(err, pickle.UnpicklingError) else []
        if names:
            raise UserError(f"{what} {path} holds objects other than tensors and plain data "
                            f"({', '.join(names)}); refused, since loading them could run code") from None
        raise UserError(f"cannot read {what} {path}: {type(err).__name__} (truncated, damaged or not a "
                        f"PyTorch file)") from None


def _unsafe_globals(path: str) -> list:
    """Classes and functions the file would have to rebuild beyond those allowed (found by reading
    the pickle's opcodes, not by running it)."""
    try:
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in CHECKPOINT_SAFE_GLOBALS}
        return [name for name in torch.serialization.get_unsafe_globals_in_checkpoint(path) if name not in allowed]
    except Exception:  # noqa: BLE001  (not a zip checkpoint: the caller reports the load error)
        return []


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only builtin containers, strings and numbers: any class or function is refused
    (sets and frozensets, which older pickle protocols build by name, excepted)."""

    _BUILTIN_CONTAINERS = {(module, name) for module in ("builtins", "__builtin__") for name in ("set", "frozenset")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._BUILTIN_CONTAINERS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def load_plain_pickle(path: str) -> Any:
    """Read a pickle that may hold only lists, dicts, tuples, sets, strings, bytes, numbers, booleans
    and None; anything else is a :class:`UserError` (and is never constructed)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _PlainUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as err:
        raise UserError(f"{path} holds more than lists, dicts, strings and numbers ({err}); "
                        f"refused, since loading it could run code") from None
    except Exception as err:  # noqa: BLE001  (truncated or not a pickle)
        raise UserError(f"cannot read {path}: {type(err).__name__}") from None


# ----------------------------------------------------------------------------- alignment metrics
# Kept importable from here under the release's names; the code lives in alignment.metrics.
from alignment.metrics import (alignment_error, alignment_metrics, cycle_error, kendalls_tau,  # noqa: E402,F401
                               kendalls_tau_b, nearest_frames, nearest_frames_both_ways)
