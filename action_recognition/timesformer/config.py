"""Every config key with its default (TimeSformer / SlowFast names, plus ``TRL`` for 3DTRL).

A run's config is these defaults, updated by a YAML file, updated by ``KEY VALUE`` pairs from
the command line. Keys that are not listed here are rejected. Where a key also exists in the
release's ``timesformer/config/defaults.py`` and changes what a run computes, the default is the
release's, so a config written for the release trains here as it did there; the keys that differ
are listed in :data:`NOT_THE_RELEASE_DEFAULT` with the reason.
"""
import logging
from typing import Any, Iterable, List, Optional

import yaml

from threedtrl.runtime import (COUNT, FINITE, FRACTION, NOT_NEGATIVE, POSITIVE, PROBABILITY, UserError,
                               check_compile_options, check_range)
from threedtrl.runtime.config import Config, check_number_list, load_yaml, short_repr

from .release_keys import NO_EFFECT_KEYS, NO_EFFECT_SECTIONS, RELEASE_ONLY_DEFAULTS

log = logging.getLogger("timesformer")

_DEFAULTS = {
    "TRAIN": {
        "ENABLE": True,                  # train (False: test only)
        "DATASET": "video",              # a name only: every data set is read from CSV lists
        "BATCH_SIZE": 64,                # total over all processes
        "EVAL_PERIOD": 1,                # epochs between validation passes
        "CHECKPOINT_PERIOD": 1,          # epochs between checkpoints
        "AUTO_RESUME": True,             # continue from the last checkpoint in OUTPUT_DIR
        "CHECKPOINT_FILE_PATH": "",      # initialise from this TimeSformer checkpoint (model_state)
        "FINETUNE": False,               # with CHECKPOINT_FILE_PATH: load weights only, new head allowed
        "MIXED_PRECISION": False,        # bf16 autocast on GPUs
    },
    "DATA": {
        "PATH_TO_DATA_DIR": "",          # folder holding train.csv, val.csv, test.csv
        "PATH_PREFIX": "",               # prefix of the relative video paths (default: PATH_TO_DATA_DIR)
        "PATH_LABEL_SEPARATOR": " ",     # what separates a list line's video path from its label
        "NUM_FRAMES": 8,                 # frames per clip
        "SAMPLING_RATE": 8,              # frames between two sampled frames (see TEMPORAL_SAMPLING)
        "TRAIN_JITTER_SCALES": [256, 320],  # training: the shorter side is resized to a random size in [low, high]
        "TRAIN_CROP_SIZE": 224,          # training: random square crop of this side
        "TEST_CROP_SIZE": 256,           # test: 3 crops of this side from frames whose shorter side is this too
                                         # (one crop: its centre, the shorter side at TRAIN_JITTER_SCALES[0])
        # slowfast: the release's (SlowFast's) spatial sampling: normalised float frames, shorter side to
        # round(U(low, high)) (the longer side floored), bilinear without antialiasing, crop offsets drawn in
        # [0, slack), test crops at ceil(slack / 2) of the shorter side; opencv: this project's earlier
        # sampling on the uint8 frames (OpenCV area / linear resizing, offsets in [0, slack], one test scale)
        "SPATIAL_SAMPLING": "slowfast",
        "RANDOM_FLIP": True,             # training: horizontal flip with probability 0.5
        "INPUT_CHANNEL_NUM": [3],        # channels of the input (RGB)
        "MEAN": [0.45, 0.45, 0.45],      # input normalisation (TimeSformer's)
        "STD": [0.225, 0.225, 0.225],    # see MEAN
        "DECODING_BACKEND": "opencv",    # video reader: opencv, the only one here
        # slowfast: the release's (SlowFast's) temporal sampling: NUM_FRAMES indices spread evenly over a
        # span of SAMPLING_RATE * NUM_FRAMES frames at TARGET_FPS (rescaled to the video's fps), test
        # clip i of n starting at i/n of the slack; stride: indices SAMPLING_RATE apart, test clips centred
        "TEMPORAL_SAMPLING": "slowfast",
        "TARGET_FPS": 30,                # slowfast sampling: the frame rate SAMPLING_RATE counts at
        "VAL_AS_TRAIN": True,            # validation clips sampled and augmented like training (the release)
        # how the scores of a test video's clips and crops are combined: sum of logits (the release) or
        # mean of softmax probabilities
        "ENSEMBLE_METHOD": "sum",
    },
    "TIMESFORMER": {
        "ATTENTION_TYPE": "divided_space_time",  # divided_space_time, joint_space_time or space_only
        "PRETRAINED_MODEL": "",          # ImageNet ViT weights or a TimeSformer checkpoint
        "EMBED_DIM": 768,                # token width (768: ViT-B)
        "DEPTH": None,                   # None: 16 with 3DTRL (the release), 12 without
        "NUM_HEADS": 12,                 # attention heads per block
        "PATCH_SIZE": 16,                # pixels per patch side
        "MLP_RATIO": 4.0,                # MLP hidden width / EMBED_DIM
        "DROP_PATH_RATE": 0.1,           # stochastic depth, rising linearly to this over the blocks
    },
    "TRL": {
        "ENABLE": True,                  # False runs plain TimeSformer
        "LOC": 12,                       # 3DTRL goes before this block
        "PRED_CAMPOS_FROM": "both-sep",  # camera estimator input: both-sep, both-avg, cls
        "PRED_DEPTH": True,              # estimate a depth per token (False: camera-frame xyz directly)
        # release: the layer gets the model's initialisation (truncated normal 0.02 on every Linear);
        # project: PyTorch's default, translation weights 1 and rotation 0 (the image models' layer)
        "INIT": "release",
    },
    "SOLVER": {
        "BASE_LR": 0.1,                  # learning rate (per the whole batch: not scaled with processes)
        "LR_POLICY": "cosine",           # steps_with_relative_lrs or cosine
        "STEPS": [],                     # steps policy: the epochs at which each of LRS starts
        "LRS": [],                       # steps policy: multiples of BASE_LR from each of STEPS on
        "COSINE_END_LR": 0.0,            # cosine policy: the rate at MAX_EPOCH
        "MAX_EPOCH": 300,                # epochs of training
        "MOMENTUM": 0.9,                 # SGD momentum
        "NESTEROV": True,                # SGD with Nesterov momentum
        "DAMPENING": 0.0,                # SGD momentum dampening
        "WEIGHT_DECAY": 1e-4,            # L2 weight decay (see ZERO_WD_1D_PARAM)
        "WARMUP_EPOCHS": 0.0,            # linear warm-up from WARMUP_START_LR over this many epochs
        "WARMUP_START_LR": 0.01,         # the rate warm-up starts at
        "OPTIMIZING_METHOD": "sgd",      # sgd, adam or adamw
        "CLIP_GRAD_NORM": None,          # clip the gradients' total norm to this (None: no clipping)
        # True: no weight decay on 1-D parameters and on the position, class and time embeddings;
        # False: every parameter decays, as in the release (it exempts only names containing "bn")
        "ZERO_WD_1D_PARAM": False,
    },
    "MODEL": {
        "ARCH": "vit",                   # vit (the ViT TimeSformer), the only one here
        "MODEL_NAME": "vit_base_patch16_224",  # a name only: the size comes from TIMESFORMER.*
        "NUM_CLASSES": 400,              # classes of the head (the labels of the lists are 0..NUM_CLASSES-1)
        "LOSS_FUNC": "cross_entropy",    # the only loss here (single-label classification)
        "DROPOUT_RATE": 0.5,             # dropout before the head, applied only with HEAD_DROPOUT
        "HEAD_DROPOUT": False,           # the release's ViT TimeSformer never applies DROPOUT_RATE
        "COMPILE": False,                # torch.compile the model for training and test
        "COMPILE_BACKEND": "inductor",   # torch.compile backend when MODEL.COMPILE
    },
    "TEST": {
        "ENABLE": True,                  # test after training (or alone, with TRAIN.ENABLE False)
        "DATASET": "video",              # a name only, as TRAIN.DATASET
        "BATCH_SIZE": 8,                 # clips per test step, total over all processes
        "CHECKPOINT_FILE_PATH": "",      # test these weights (default: the trained model)
        "NUM_ENSEMBLE_VIEWS": 10,        # clips per video
        "NUM_SPATIAL_CROPS": 3,          # 1 = centre, 3 = left/centre/right
        "SAVE_RESULTS_PATH": "",         # also save per-video scores (.npz) under OUTPUT_DIR
    },
    "DATA_LOADER": {
        "NUM_WORKERS": 2,                # video-decoding worker processes per training process
        "PIN_MEMORY": True,              # page-locked batches (faster copies to the GPU)
    },
    "LOG": {
        "PROGRESS": True,                # tqdm bars
        "PERIOD": 10,                    # iterations between TensorBoard scalars
    },
    "NUM_GPUS": 1,                       # processes per node (GPUs, or CPU processes without one)
    "NUM_SHARDS": 1,                     # nodes
    "SHARD_ID": 0,                       # this node's index among NUM_SHARDS
    "DIST_BACKEND": "",                  # default: nccl on GPUs, gloo on the CPU
    "RNG_SEED": 1,                       # seed of every random generator (per process and epoch from it)
    "OUTPUT_DIR": "./output",            # checkpoints, TensorBoard, results.json
}

ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")

# The defaults above that are not the release's (its defaults.py is SlowFast's), and why: none
# changes what a run computes. A config that sets one of them to the release's value is read as it.
NOT_THE_RELEASE_DEFAULT = {
    "TRAIN.DATASET": ("kinetics", "a name only: every data set is read from CSV lists"),
    "TEST.DATASET": ("kinetics", "a name only, as TRAIN.DATASET"),
    "MODEL.ARCH": ("slowfast", "only the ViT TimeSformer is built here"),
    "MODEL.MODEL_NAME": ("SlowFast", "a name only: the size comes from TIMESFORMER.*"),
    "DATA.INPUT_CHANNEL_NUM": ([3, 3], "SlowFast's two pathways; the ViT reads one RGB input"),
    "DATA.DECODING_BACKEND": ("pyav", "frames are decoded with OpenCV here"),
    "TRAIN.EVAL_PERIOD": (10, "validation does not change training; every epoch shows progress"),
    "TRAIN.CHECKPOINT_PERIOD": (10, "a checkpoint every epoch, so an interrupted run loses at most one"),
    "DATA_LOADER.NUM_WORKERS": (8, "decoding workers per process; clips do not depend on them"),
    "DIST_BACKEND": ("nccl", "empty picks nccl on GPUs (the release's) and gloo on the CPU"),
    "OUTPUT_DIR": ("./tmp", "where a run writes; script.sh always passes one"),
}


def get_defaults() -> Config:
    """A fresh copy of every key with its default value."""
    return Config(_DEFAULTS)


# Sections of SlowFast configs (and Charades' multi-label keys) that the release's configs folder
# holds for models this project does not build.
_FOREIGN = {"SLOWFAST": "SlowFast", "RESNET": "SlowFast/ResNet", "NONLOCAL": "SlowFast/non-local",
            "BN": "SlowFast/BatchNorm"}

# Keys added to reproduce the release, with the values that give this project's earlier behaviour:
# a run resumed from a checkpoint whose config lacks them continues as it was trained.
EARLIER_BEHAVIOUR = {("DATA", "TEMPORAL_SAMPLING"): "stride", ("DATA", "VAL_AS_TRAIN"): False,
                     ("DATA", "SPATIAL_SAMPLING"): "opencv",
                     ("DATA", "ENSEMBLE_METHOD"): "mean_softmax", ("SOLVER", "ZERO_WD_1D_PARAM"): True,
                     ("MODEL", "HEAD_DROPOUT"): True, ("TRL", "INIT"): "project"}


def refuse_foreign_config(data: dict, path: str) -> None:
    """One line for the release's SlowFast and Charades configs: those models are not part of this project."""
    for section, what in _FOREIGN.items():
        if section in data:
            raise UserError(f"{path} is a {what} config: SlowFast models are not part of this project "
                            f"(only TimeSformer, with or without 3DTRL)")
    data_section = data.get("DATA") if isinstance(data.get("DATA"), dict) else {}
    model_section = data.get("MODEL") if isinstance(data.get("MODEL"), dict) else {}
    if data_section.get("MULTI_LABEL") or model_section.get("HEAD_ACT", "softmax") != "softmax":
        raise UserError(f"{path} is a Charades (multi-label) config: multi-label training is not part of this "
                        f"project (single-label CSV lists only)")


def _as_lists(value: Any) -> Any:
    """Tuples as lists, at every depth (YAML has no tuples)."""
    return [_as_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def _has_no_effect(dotted: str) -> bool:
    return dotted.split(".")[0] in NO_EFFECT_SECTIONS or dotted in NO_EFFECT_KEYS


def release_only_key_is_harmless(dotted: str, value: Any) -> bool:
    """Whether ``dotted``, a key of the release's config that this project lacks, can be set to ``value``
    without changing a run here (False for any other key); raises a one-line error where it would change one."""
    if _has_no_effect(dotted):
        log.warning("%s: the release's key, with no effect here (accepted)", dotted)
        return True
    if dotted not in RELEASE_ONLY_DEFAULTS:
        return False
    default = RELEASE_ONLY_DEFAULTS[dotted]
    if _as_lists(value) != _as_lists(default):
        raise UserError(f"{dotted} {short_repr(value)}: the release's key is not supported here except at its "
                        f"default ({default!r})")
    log.warning("%s: the release's key at its default (accepted)", dotted)
    return True


def set_aside_release_keys(data: dict, prefix: str = "") -> dict:
    """``data`` (a config mapping, nested) without the release's keys this project lacks, each checked by
    :func:`release_only_key_is_harmless`; any other unknown key stays, for ``Config.merge`` to refuse."""
    kept = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if release_only_key_is_harmless(dotted, value):
            continue
        if isinstance(value, dict):
            pruned = set_aside_release_keys(value, f"{dotted}.")
            if pruned or not value:   # a section of the release's keys alone goes with them
                kept[key] = pruned
        else:
            kept[key] = value
    return kept


def set_aside_release_overrides(pairs: List[str]) -> List[str]:
    """``["KEY", "VALUE", ...]`` without the release's keys this project lacks (checked as in a file)."""
    kept = []
    for dotted, raw in zip(pairs[::2], pairs[1::2]):
        known = _has_no_effect(dotted) or dotted in RELEASE_ONLY_DEFAULTS
        try:
            value = load_yaml(raw) if known and not isinstance(RELEASE_ONLY_DEFAULTS.get(dotted), str) else raw
        except yaml.YAMLError as err:
            raise UserError(f"value of {dotted} is not a plain YAML value: {str(err).splitlines()[0]}") from None
        if not known or not release_only_key_is_harmless(dotted, value):
            kept += [dotted, raw]
    return kept + pairs[len(pairs) - len(pairs) % 2:]


def load_config(cfg_file: Optional[str] = None, overrides: Iterable[str] = ()) -> Config:
    """Defaults, then the YAML file, then ``["KEY", "VALUE", ...]`` overrides; checked."""
    cfg = get_defaults()
    if cfg_file:
        data = Config.from_yaml(cfg_file)
        refuse_foreign_config(data, cfg_file)
        cfg.merge(set_aside_release_keys(data))
    cfg.merge_list(set_aside_release_overrides(list(overrides)))
    check_config(cfg)
    return cfg


def model_depth(cfg: Config) -> int:
    """``TIMESFORMER.DEPTH``, or the release's default: 16 blocks with 3DTRL, 12 without."""
    depth = cfg.TIMESFORMER.DEPTH
    return int(depth) if depth is not None else (16 if cfg.TRL.ENABLE else 12)


# The values a run can work with, by kind of range (see runtime.check_range).
VALUE_RANGES = (
    (COUNT, ("MODEL.NUM_CLASSES", "DATA.NUM_FRAMES", "DATA.SAMPLING_RATE", "DATA.TRAIN_CROP_SIZE", "DATA.TEST_CROP_SIZE",
             "TIMESFORMER.EMBED_DIM", "TIMESFORMER.NUM_HEADS", "TIMESFORMER.DEPTH", "TIMESFORMER.PATCH_SIZE",
             "SOLVER.MAX_EPOCH", "TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE", "TRAIN.CHECKPOINT_PERIOD",
             "TEST.NUM_ENSEMBLE_VIEWS", "LOG.PERIOD")),
    (NOT_NEGATIVE, ("SOLVER.WEIGHT_DECAY", "SOLVER.WARMUP_EPOCHS", "SOLVER.WARMUP_START_LR", "SOLVER.COSINE_END_LR",
                    "TRAIN.EVAL_PERIOD", "DATA_LOADER.NUM_WORKERS", "NUM_GPUS")),
    (POSITIVE, ("SOLVER.BASE_LR", "DATA.STD", "DATA.TARGET_FPS", "TIMESFORMER.MLP_RATIO", "SOLVER.CLIP_GRAD_NORM")),
    (FRACTION, ("TIMESFORMER.DROP_PATH_RATE", "MODEL.DROPOUT_RATE")),
    (PROBABILITY, ("SOLVER.MOMENTUM", "SOLVER.DAMPENING")),
    (FINITE, ("DATA.MEAN",)),
)

# Keys that take one of a few values: what the model, data pipeline and solver implement.
ALLOWED_VALUES = (
    ("TIMESFORMER.ATTENTION_TYPE", ATTENTION_TYPES),
    ("TRL.PRED_CAMPOS_FROM", ("both-sep", "both-avg", "cls")),
    ("TRL.INIT", ("release", "project")),
    ("DATA.TEMPORAL_SAMPLING", ("slowfast", "stride")),
    ("DATA.SPATIAL_SAMPLING", ("slowfast", "opencv")),
    ("DATA.ENSEMBLE_METHOD", ("sum", "mean_softmax")),
    ("TEST.NUM_SPATIAL_CROPS", (1, 3)),
    ("SOLVER.LR_POLICY", ("steps_with_relative_lrs", "cosine")),
    ("SOLVER.OPTIMIZING_METHOD", ("sgd", "adam", "adamw")),
    ("MODEL.LOSS_FUNC", ("cross_entropy",)),
)


def dotted_value(cfg: Config, key: str) -> Any:
    """``cfg.SOLVER.BASE_LR`` for ``key`` ``"SOLVER.BASE_LR"``."""
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def check_config(cfg: Config) -> None:
    """Reject values that cannot work, with a message naming the key."""
    for kind, keys in VALUE_RANGES:
        for key in keys:
            check_range(key, dotted_value(cfg, key), **kind)
    for key, allowed in ALLOWED_VALUES:
        value = dotted_value(cfg, key)
        if value not in allowed:
            raise UserError(f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    if cfg.TIMESFORMER.EMBED_DIM % cfg.TIMESFORMER.NUM_HEADS:
        raise UserError("TIMESFORMER.EMBED_DIM must be divisible by TIMESFORMER.NUM_HEADS")
    depth = model_depth(cfg)
    if cfg.TRL.ENABLE and not 0 <= cfg.TRL.LOC < depth:
        raise UserError(f"TRL.LOC must lie in [0, {depth - 1}] for a {depth}-block model, got {cfg.TRL.LOC}")
    for key in ("MEAN", "STD"):
        if len(cfg.DATA[key]) != cfg.DATA.INPUT_CHANNEL_NUM[0]:
            raise UserError(f"DATA.{key} needs one value per input channel ({cfg.DATA.INPUT_CHANNEL_NUM[0]}), "
                            f"got {cfg.DATA[key]}")
    if len(cfg.DATA.TRAIN_JITTER_SCALES) != 2:
        raise UserError(f"DATA.TRAIN_JITTER_SCALES must be [low, high], got {cfg.DATA.TRAIN_JITTER_SCALES}")
    low, high = cfg.DATA.TRAIN_JITTER_SCALES
    if not 0 < low <= high or cfg.DATA.TRAIN_CROP_SIZE > low:
        raise UserError("DATA.TRAIN_JITTER_SCALES must be [low, high] with TRAIN_CROP_SIZE <= low <= high")
    one_crop = cfg.TEST.NUM_SPATIAL_CROPS == 1 or not cfg.DATA.VAL_AS_TRAIN
    if cfg.DATA.SPATIAL_SAMPLING == "slowfast" and one_crop and low < cfg.DATA.TEST_CROP_SIZE:
        raise UserError("a single (test or centre validation) crop is taken from frames whose shorter side is "
                        "TRAIN_JITTER_SCALES[0]: it must be at least TEST_CROP_SIZE")
    for key in ("TRAIN_CROP_SIZE", "TEST_CROP_SIZE"):
        if cfg.DATA[key] % cfg.TIMESFORMER.PATCH_SIZE:
            raise UserError(f"DATA.{key} must be a multiple of TIMESFORMER.PATCH_SIZE")
    for key in ("STEPS", "LRS"):  # their default is empty, so Config's type check cannot see numbers
        check_number_list(f"SOLVER.{key}", cfg.SOLVER[key])
    if cfg.SOLVER.LR_POLICY == "steps_with_relative_lrs" and (
            not cfg.SOLVER.STEPS or len(cfg.SOLVER.STEPS) != len(cfg.SOLVER.LRS)):
        raise UserError("SOLVER.LR_POLICY steps_with_relative_lrs needs SOLVER.STEPS and SOLVER.LRS of the same, "
                        "non-zero length")
    if cfg.MODEL.ARCH != "vit" or cfg.DATA.DECODING_BACKEND != "opencv":
        raise UserError("only MODEL.ARCH vit and DATA.DECODING_BACKEND opencv are supported")
    if cfg.MODEL.COMPILE:
        check_compile_options(cfg.MODEL.COMPILE_BACKEND)
    if cfg.NUM_SHARDS < 1 or not 0 <= cfg.SHARD_ID < cfg.NUM_SHARDS:
        raise UserError("NUM_SHARDS must be >= 1 and SHARD_ID in [0, NUM_SHARDS)")
