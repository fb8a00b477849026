"""Shared utilities: seeding, a small config, meters, atomic files, CLI errors, alignment metrics."""
import json
import os
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


def run_cli(main: Callable[[], Any]) -> None:
    """Run ``main``; a :class:`UserError` prints ``error: <message>`` to stderr and exits with 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


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


class Config(dict):
    """A nested dict with attribute access, YAML loading and dotted overrides.

    Overrides may only set keys that exist (a typo is an error, not a new key).
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
                self[key] = Config(value) if isinstance(value, dict) else value
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
            node[keys[-1]] = load_yaml(raw) if isinstance(raw, str) else raw
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


# ----------------------------------------------------------------------------- alignment metrics

def _squared_distances(z1: torch.Tensor, z2: torch.Tensor, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """``(l1, l2)`` squared Euclidean distances, computed as ``sum((a - b)^2)`` like a plain loop
    (so exact ties stay ties), in row chunks to bound memory."""
    z1, z2 = z1.detach().float(), z2.detach().float()
    rows = max(1, chunk_elems // max(1, z2.shape[0] * z2.shape[1]))
    return torch.cat([((z1[i:i + rows, None] - z2[None]) ** 2).sum(-1) for i in range(0, len(z1), rows)])


def nearest_frames(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """For every row of ``z1`` the index of its nearest row of ``z2`` (first index on ties).

    Distances come from one matrix product (``|a|^2 + |b|^2 - 2 a.b``). Rows whose best match
    is not clear of the runner-up by more than that expansion's rounding error are recomputed
    as ``sum((a - b)^2)``, so the result is the one a plain loop gives, ties included.
    """
    z1, z2 = z1.detach().float(), z2.detach().float()
    sq1, sq2 = z1.square().sum(1, keepdim=True), z2.square().sum(1)
    dist = torch.addmm(sq1 + sq2, z1, z2.T, alpha=-2)
    best, nearest = dist.min(dim=1, keepdim=True)
    tolerance = 1e-4 * (sq1 + sq2.max())
    unclear = ((dist <= best + tolerance).sum(dim=1) > 1).nonzero().squeeze(1)
    nearest = nearest.squeeze(1)
    if len(unclear):
        nearest[unclear] = _squared_distances(z1[unclear], z2).argmin(dim=1)
    return nearest


def alignment_error(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Mean ``|i - NN(i)| / l`` over frames ``i`` of ``z1`` ``(l, D)`` matched into ``z2`` ``(l, D)``."""
    nn_idx = nearest_frames(z1, z2)
    frames = torch.arange(len(z1), device=nn_idx.device)
    return (frames - nn_idx).abs().sum().item() / len(z1) / len(z1)


def cycle_error(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Mean ``|i - NN_21(NN_12(i))| / l``: how far a frame lands after a round trip through ``z2``."""
    back = nearest_frames(z2, z1)[nearest_frames(z1, z2)]
    frames = torch.arange(len(z1), device=back.device)
    return (frames - back).abs().sum().item() / len(z1) / len(z1)


def kendalls_tau(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """The release's Kendall's tau: pairs ``i < j`` are concordant when ``NN(i) < NN(j)``,
    everything else (ties included) discordant; ``tau = (C - (T - C)) / T``."""
    length = len(z1)
    if length < 2:
        raise ValueError("kendalls_tau needs at least two frames")
    nn_idx = nearest_frames(z1, z2)
    concordant = (nn_idx[:, None] < nn_idx[None, :]).triu(diagonal=1).sum().item()
    total = length * (length - 1) // 2
    return (concordant - (total - concordant)) / total
