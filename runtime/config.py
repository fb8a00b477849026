"""The typed config (of the action-recognition task and of ``--model-kwargs``) and the YAML reader
every config file goes through: safe (no tags, no aliases, no duplicate keys), YAML 1.2 numbers."""
import math
import os
import re
from typing import Any, Iterable, Optional

import yaml

from .errors import UserError


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3``-style numbers (no dot) as floats, as YAML 1.2 does, and
    refuses aliases (``*name``: nested aliases expand exponentially, a few lines can hold gigabytes,
    and no config needs them) and duplicate keys."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key_node, deep=True) for key_node, _ in node.value]
        duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
        if duplicates:  # PyYAML keeps the last silently; a config that says two things is a mistake
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {duplicates[0]!r}", node.start_mark)
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"aliases (*{event.anchor}) are not allowed in configs",
                                              event.start_mark)
        return super().compose_node(parent, index)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse YAML text; numbers such as ``1e-3`` are floats (plain PyYAML reads them as strings).

    Raises:
        yaml.YAMLError: not YAML, or it holds an alias.
    """
    return yaml.load(text, Loader=_YamlLoader)


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages about values users give."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def load_yaml_mapping(path: str, what: str = "keys") -> dict:
    """The mapping of ``what`` to values that the YAML file ``path`` holds; a one-line
    :class:`UserError` when the file is missing, not YAML or not a mapping."""
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {path}")
    with open(path) as f:
        try:
            data = load_yaml(f.read()) or {}
        except yaml.YAMLError as err:
            raise UserError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of {what} to values")
    return data


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
        raise UserError(f"{key} must be {expected}, got {short_repr(value)}")
    if isinstance(default, (list, tuple)) and default and all(_is_number(v) for v in default):
        check_number_list(key, value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{key} must be finite, got {short_repr(value)}")
    return value


def check_number_list(key: str, value: Any) -> None:
    """A :class:`UserError` unless ``value`` is a list of finite numbers (a key whose default is an empty
    list cannot be checked from its default, so its config checks this itself)."""
    if not all(_is_number(v) for v in value):
        raise UserError(f"{key} must be a list of numbers, got {short_repr(value)}")
    if any(isinstance(v, float) and not math.isfinite(v) for v in value):
        raise UserError(f"{key} must be finite, got {short_repr(value)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Config(dict):
    """A nested dict with attribute access, YAML loading and dotted overrides.

    Overrides may only set keys that exist (a typo is an error, not a new key) and must have the
    type of the key's default (checked in :func:`_checked_value`).
    """

    def __init__(self, data: Optional[dict] = None, **kwargs):
        super().__init__()
        for key, value in dict(data or {}, **kwargs).items():  # Config(a=1): the release's form
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
        return cls(load_yaml_mapping(path))

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
        """Apply ``["A.B", "value", ...]`` overrides; values are parsed as YAML scalars/lists, except for
        keys whose default is a string (paths, names), which take the text as it is (so ``OUT #3``
        is that folder, not ``OUT`` and a comment)."""
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
                value = raw if not isinstance(raw, str) or isinstance(node[keys[-1]], str) else load_yaml(raw)
            except yaml.YAMLError as err:
                raise UserError(f"value of {dotted} is not a plain YAML value: {str(err).splitlines()[0]}") from None
            node[keys[-1]] = _checked_value(dotted, node[keys[-1]], value)
        return self

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else v for k, v in self.items()}
