"""Command-line parsing with YAML configs whose keys are the flag names (timm's convention)."""
import argparse
import math
import warnings
from typing import List, Mapping, Optional, Sequence, Tuple

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)
import torch
import yaml
from timm.data import create_transform
from timm.optim import create_optimizer_v2, optimizer_kwargs
from timm.scheduler import create_scheduler_v2, scheduler_kwargs

from threedtrl.runtime import COUNT, FINITE, FRACTION, NOT_NEGATIVE, POSITIVE, PROBABILITY, UserError, check_flag_ranges
from threedtrl.runtime.config import load_yaml, load_yaml_mapping, short_repr


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one-line :class:`UserError` s."""

    def error(self, message: str):
        raise UserError(message)


class ParseKwargs(argparse.Action):
    """``--model-kwargs a=1 b=x c=1e-1`` -> ``{"a": 1, "b": "x", "c": 0.1}`` (values read as YAML 1.2 scalars)."""

    def __call__(self, parser, namespace, values, option_string=None):
        kwargs = {}
        for item in values:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UserError(f"{option_string} expects KEY=VALUE items, got '{item}'")
            try:
                kwargs[key.replace("-", "_")] = load_yaml(value)
            except yaml.YAMLError as err:
                raise UserError(f"{option_string} {key}: not a plain YAML value: {str(err).splitlines()[0]}") from None
        setattr(namespace, self.dest, kwargs)


def load_yaml_config(path: str, parser: argparse.ArgumentParser, config_only: Mapping[str, str] = None
                     ) -> Tuple[dict, List[str]]:
    """Read a YAML config and check that every key is a flag of ``parser`` (``-`` or ``_`` both fine).

    Keys in ``config_only`` (name -> why it has no effect) are accepted and left out. Returns the
    config and one note per such key."""
    data = load_yaml_mapping(path, "flag names")
    known = {action.dest: action for action in parser._actions}
    config, notes = {}, []
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest in (config_only or {}):
            notes.append(f"{key}: accepted, no effect here ({config_only[dest]})")
            continue
        if dest not in known or dest in ("help", "config"):
            raise UserError(f"unknown key '{key}' in config {path}")
        config[dest] = check_config_value(known[dest], str(key), value, path)
    return config, notes


def check_config_value(action: argparse.Action, key: str, value, path: str):
    """``value`` of config key ``key`` checked as its flag would check it on the command line: its
    type (each item's, for list flags), a choice, a finite number; returns it converted."""
    def bad(why: str):
        raise UserError(f"config {path}: {key} {why}, got {short_repr(value)}")

    if value is None:
        return value
    if isinstance(action, ParseKwargs):
        return value if isinstance(value, dict) else bad("must be a mapping of model arguments")
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
        return value if isinstance(value, bool) else bad("must be true or false")
    many = action.nargs not in (None, "?")
    if many and not isinstance(value, (list, tuple)):
        bad("must be a list")
    if not many and isinstance(value, (list, tuple, dict)):
        bad("must be a single value")
    items = list(value) if many else [value]
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        bad(f"must have {action.nargs} values")
    converted = []
    for item in items:
        if isinstance(item, (list, dict)):
            bad("must hold plain values")
        if action.type is not None:
            try:
                item = action.type(item) if not isinstance(item, bool) else bad("must be a number")
            except (TypeError, ValueError):
                bad(f"must be {'numbers' if many else 'a number'}" if action.type in (int, float) else "is not valid")
        if isinstance(item, float) and not math.isfinite(item):
            bad("must be finite")
        if action.choices is not None and item not in action.choices:
            bad(f"must be one of {', '.join(map(str, action.choices))}")
        converted.append(item)
    return converted if many else converted[0]


def parse_with_config(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None,
                      config_only: Mapping[str, str] = None) -> Tuple[argparse.Namespace, dict, List[str]]:
    """Parse ``argv``: defaults < YAML config (``-c/--config``) < command-line flags.

    Returns the arguments, the config values that were read and the notes on the config's
    ``config_only`` keys (see :func:`load_yaml_config`).
    """
    pre = CliParser(add_help=False)
    pre.add_argument("-c", "--config", default="")
    known, remaining = pre.parse_known_args(argv)
    config, notes = load_yaml_config(known.config, parser, config_only) if known.config else ({}, [])
    parser.set_defaults(**config)
    args = parser.parse_args(remaining)
    args.config = known.config
    return args, config, notes


def float_pair(values: Optional[List[float]], flag: str) -> Optional[Tuple[float, float]]:
    if values is None:
        return None
    if len(values) != 2:
        raise UserError(f"{flag} takes two numbers, got {values}")
    return float(values[0]), float(values[1])


# The values a run can work with, by kind of range (see runtime.check_range); flags without their dashes.
DATA_RANGES = (
    (COUNT, ("img_size", "input_size", "batch_size", "num_classes")),
    (NOT_NEGATIVE, ("workers",)),
    (POSITIVE, ("crop_pct", "std")),
    (FINITE, ("mean",)),
)
TRAINING_RANGES = (
    (COUNT, ("epochs", "validation_batch_size", "recount", "lr_cycle_limit", "log_interval", "checkpoint_hist")),
    (NOT_NEGATIVE, ("lr", "warmup_lr", "min_lr", "weight_decay", "color_jitter", "mixup", "cutmix", "aug_repeats",
                    "warmup_epochs", "cooldown_epochs", "patience_epochs", "mixup_off_epoch", "start_epoch", "opt_eps")),
    (POSITIVE, ("clip_grad", "layer_decay", "decay_epochs", "decay_rate", "lr_cycle_mul", "scale", "ratio")),
    (FRACTION, ("smoothing", "drop", "drop_path", "opt_betas")),
    (PROBABILITY, ("reprob", "hflip", "vflip", "mixup_prob", "mixup_switch_prob", "momentum", "model_ema_decay")),
)


def check_training_values(args: argparse.Namespace) -> None:
    """Range checks of the training flags: a value torch or timm would stop on with a traceback (a
    negative size, a zero std) fails before anything starts. The names timm looks up (``--opt``,
    ``--sched``, ``--aa``, interpolations) are checked by :func:`check_timm_settings`."""
    check_flag_ranges(args, DATA_RANGES + TRAINING_RANGES)
    for flag in ("scale", "ratio"):
        pair = getattr(args, flag)
        if pair is not None and pair[0] > pair[1]:
            raise UserError(f"--{flag} must be (low, high) with low <= high, got {list(pair)}")


def check_timm_settings(args: argparse.Namespace, training: bool) -> None:
    """Build timm's transform (and, for training, its optimizer and schedule on a stand-in
    parameter) once, so that a name or value timm refuses is one line before any data or process."""
    size = args.input_size or (3, args.img_size or 224, args.img_size or 224)
    common = dict(mean=args.mean or (0.5,) * 3, std=args.std or (0.5,) * 3)
    steps = [("the validation transform (--interpolation, --crop-pct)", lambda: create_transform(
        size, is_training=False, interpolation=args.interpolation or "bilinear", crop_pct=args.crop_pct, **common))]
    if training:
        steps += [
            ("the training augmentation (--aa, --train-interpolation, --scale, --ratio, --color-jitter)",
             lambda: create_transform(size, is_training=True, no_aug=args.no_aug, scale=args.scale, ratio=args.ratio,
                                      hflip=args.hflip, vflip=args.vflip, color_jitter=args.color_jitter,
                                      auto_augment=args.aa, interpolation=args.train_interpolation or "random",
                                      re_prob=args.reprob, re_mode=args.remode, re_count=args.recount, **common)),
            ("the optimizer and schedule (--opt, --sched and their settings)", lambda: create_scheduler_v2(
                stand_in_optimizer(args), **scheduler_kwargs(args), updates_per_epoch=1))]
    for what, build in steps:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                build()
        except (AssertionError, KeyError, TypeError, ValueError) as err:
            why = f"unknown name {err}" if isinstance(err, KeyError) else (str(err).splitlines() or ["refused"])[0]
            raise UserError(f"timm cannot build {what}: {why}") from None


def stand_in_optimizer(args: argparse.Namespace) -> torch.optim.Optimizer:
    """timm's optimizer for ``args`` on one parameter (layer decay left out: it needs the model)."""
    kwargs = optimizer_kwargs(cfg=args)
    kwargs.pop("layer_decay", None)
    return create_optimizer_v2([torch.nn.Parameter(torch.zeros(1))], **kwargs)
