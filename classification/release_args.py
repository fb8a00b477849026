"""The release's training and evaluation arguments (its timm 0.6 ``train.py``/``validate.py`` flags and
its ``i1k_configs/*.yaml`` keys) that this project's scripts take as they are.

Each such argument is either *applied* with its timm 0.6 meaning (a flag of the scripts, handled where
it acts) or *inert*: accepted with one log line saying why it has no effect here. An inert argument
given a value that would change the run (AugMix splits, BCE loss, a class map, ...) is refused in one
line instead, so no recipe changes without a word.
"""
import argparse
import logging
from typing import Any, Dict, Iterable, List

from threedtrl.runtime import UserError
from threedtrl.runtime.config import short_repr

_logger = logging.getLogger(__name__)

# name -> (the value under which it does nothing, why it has no effect here). Values other than the
# inert one are refused. Every release config gives these keys their inert value.
INERT_TRAIN = {
    "apex_amp": (False, "NVIDIA apex is not used; --amp (or the release's native_amp) is PyTorch's native AMP"),
    "aug_splits": (0, "AugMix batch splits are not part of this project's training"),
    "jsd_loss": (False, "the JSD loss needs AugMix splits, which this project's training does not make"),
    "bce_loss": (False, "binary cross-entropy training is not offered here"),
    "bce_target_thresh": (None, "binary cross-entropy training is not offered here"),
    "resplit": (False, "random-erasing splits need AugMix splits"),
    "split_bn": (False, "split BatchNorm needs AugMix splits"),
    "bn_momentum": (None, "the transformers here have no BatchNorm"),
    "bn_eps": (None, "the transformers here have no BatchNorm"),
    "drop_block": (None, "DropBlock is a CNN regulariser; the transformers here have none"),
    "epoch_repeats": (0.0, "timm 1.x folder datasets have no epoch repeats"),
    "class_map": ("", "class maps are not supported: the class folders are the classes"),
    "dataset_download": (False, "datasets are read from disk; nothing is downloaded"),
    "torchscript": (False, "TorchScript is not used; --torchcompile compiles the model"),
    "fuser": ("", "TorchScript fusers are not used; --torchcompile compiles the model"),
    "aot_autograd": (False, "functorch's AOT autograd is not used; --torchcompile compiles the model"),
    "save_images": (False, "training batches are not saved as images"),
    "log_wandb": (False, "metrics go to TensorBoard, metrics.json and summary.csv, not Weights & Biases"),
    "recovery_interval": (0, "a checkpoint is written at the end of every epoch (last.pth.tar)"),
    "dist_bn": (None, "the transformers here have no BatchNorm statistics to share"),
    "use_multi_epochs_loader": (None, "loader workers start afresh every epoch, so that a resumed run repeats "
                                      "the uninterrupted one"),
    "worker_seeding": (None, "loader workers are seeded from (seed, rank, epoch)"),
    "tta": (None, "the training script's validation has no test-time augmentation (as in timm 0.6)"),
    "local_rank": (None, "each process takes its rank from the launcher's environment (LOCAL_RANK)"),
}

# Keys of the release's configs that are no flag of its training script: timm 0.6 set them on the
# arguments and never read them, and neither does this project.
CONFIG_ONLY = {
    "bn_tf": "not a flag of the release's training script (timm 0.5's name); it had no effect there either",
    "jsd": "not a flag of the release's training script (its flag is --jsd-loss); it had no effect there either",
    "validation_batch_size_multiplier": "not a flag of the release's training script (timm 0.5's name); "
                                        "it had no effect there either",
}

INERT_VAL = {
    "apex_amp": (False, "NVIDIA apex is not used; --amp is PyTorch's native AMP"),
    "native_amp": (False, "give --amp for mixed precision"),
    "dataset": ("", "the data folder is read as an ImageFolder"),
    "dataset_download": (False, "datasets are read from disk; nothing is downloaded"),
    "class_map": ("", "class maps are not supported: the class folders are the classes"),
    "torchscript": (False, "TorchScript is not used; --torchcompile compiles the model"),
    "fuser": ("", "TorchScript fusers are not used; --torchcompile compiles the model"),
    "aot_autograd": (False, "functorch's AOT autograd is not used; --torchcompile compiles the model"),
    "retry": (False, "a batch that does not fit in memory is an error here, not retried at a smaller size"),
    "tf_preprocessing": (False, "TensorFlow preprocessing is not offered here"),
    "test_pool": (False, "test-time pooling is not offered here"),
    "real_labels": ("", "ImageNet-ReaL labels are not read here"),
    "valid_labels": ("", "a partial label space is not offered here"),
    "num_gpu": (1, "one device per process; several GPUs: run one evaluation per GPU"),
    "log_freq": (None, "progress shows on a progress bar"),
    "no_prefetcher": (None, "the evaluation loader has no prefetcher"),
    "pin_mem": (None, "the evaluation loader does not pin memory"),
}

_ANY = object()


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_inert_flags(parser: argparse.ArgumentParser, table: Dict[str, tuple], group_title: str,
                    extra_options: Dict[str, Iterable[str]] = None) -> None:
    """Flags for the ``table``'s arguments; each takes one value (or none, for a boolean whose inert
    value is False) and is checked by :func:`check_inert`."""
    group = parser.add_argument_group(group_title)
    for name, (inert, why) in table.items():
        # both spellings: the release's scripts name some flags with '_' (--local_rank, --npl_depth)
        options = list(dict.fromkeys([_flag(name), "--" + name, *(extra_options or {}).get(name, ())]))
        if inert is False:
            group.add_argument(*options, dest=name, action="store_true", default=False,
                               help=f"the release's flag; {why}")
        else:
            group.add_argument(*options, dest=name, default=_ANY if inert is None else inert,
                               help=f"the release's flag; {why}")


def check_inert(args: argparse.Namespace, table: Dict[str, tuple], given: Iterable[str]) -> List[str]:
    """Log lines for the inert arguments in ``given`` (config keys and flags the user set); a
    :class:`UserError` for one set to a value that would change the run."""
    notes = []
    for name in sorted(set(given) & set(table)):
        inert, why = table[name]
        value = getattr(args, name)
        if value is _ANY or inert is None or _same(value, inert):
            notes.append(f"{name}: accepted, no effect here ({why})")
        else:
            raise UserError(f"{name} {short_repr(value, 60)}: not supported here ({why})")
    for name in table:
        if getattr(args, name, None) is _ANY:
            setattr(args, name, None)
    return notes


def _same(value: Any, inert: Any) -> bool:
    if isinstance(inert, bool):
        return value in (inert, str(inert).lower(), 0 if not inert else 1)
    if isinstance(inert, (int, float)):
        try:
            return float(value) == float(inert)
        except (TypeError, ValueError):
            return False
    return value in (inert, None)


def given_flags(argv: Iterable[str]) -> List[str]:
    """The destinations named by ``--flag``/``--flag=value`` items of ``argv``."""
    return [item[2:].split("=", 1)[0].replace("-", "_") for item in argv if item.startswith("--")]


def log_notes(notes: Iterable[str]) -> None:
    for note in notes:
        _logger.info(note)
