#!/usr/bin/env python3
"""ImageNet training of 3DTRL and baseline models on timm's training machinery.

    python imagenet_train.py /data/imagenet -c i1k_configs/vit_3dtrl_1k_scratch.yaml
    torchrun --nproc_per_node 8 imagenet_train.py /data/imagenet -c CONFIG   # or: bash i1k.sh 8 ...

The data folder is an ImageFolder root with ``train/<class>/*`` and ``val/<class>/*``. Flags are
timm's; a YAML config (``-c``) holds flag names as keys and the command line overrides it.
Under ``torchrun`` the model runs with DistributedDataParallel (NCCL on GPUs, gloo on the CPU);
``-b`` is the batch size per process. Training lasts ``--epochs`` plus ``--cooldown-epochs``
epochs, as in timm. ``--output/<experiment>/`` receives ``last.pth.tar``, ``model_best.pth.tar``,
``summary.csv``, ``metrics.json``, ``args.yaml`` and TensorBoard scalars.
"""
import argparse
import logging
import os
import sys
from typing import Callable, Dict, Optional, Tuple

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)
import torch
from timm.data import Mixup, create_dataset, create_loader, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.layers import set_fast_norm
from timm.models import load_checkpoint, resume_checkpoint
from timm.optim import create_optimizer_v2, optimizer_kwargs
from timm.scheduler import create_scheduler_v2, scheduler_kwargs
from timm.utils import ModelEmaV3, unwrap_model
from torch.nn.parallel import DistributedDataParallel

from threedtrl.classification.cli import (CliParser, ParseKwargs, check_timm_settings, check_training_values, float_pair,
                                         parse_with_config)
from threedtrl.classification.release_args import CONFIG_ONLY, INERT_TRAIN, add_inert_flags, check_inert, given_flags, log_notes
from threedtrl.classification.engine import evaluate, train_one_epoch
from threedtrl.classification.data import StrictImageFolder, check_image_folder, patch_randaugment_posterize, split_folder
from threedtrl.classification.models import build_classifier
from threedtrl.classification.records import RunRecords, selected_metric, validates_ema
from model import load_weights
from model.three_d_trl import resolve_trl_depth
from threedtrl.runtime import (Runtime, UserError, amp_policy, check_compile_options, check_finite,
                               check_finite_weights, check_output_dir, compile_model, epoch_seed,
                               init_runtime, load_checkpoint_file, run_cli, seed_everything, setup_logging)

_logger = logging.getLogger("train")
patch_randaugment_posterize()


# ----------------------------------------------------------------------------- arguments

def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(description="ImageNet training (timm) of 3DTRL and baseline models.")
    parser.add_argument("-c", "--config", default="", metavar="FILE", help="YAML config; keys are flag names")
    group = parser.add_argument_group("data")
    group.add_argument("data_dir", nargs="?", default=None, metavar="DATA_DIR",
                       help="ImageFolder root with train/ and val/")
    group.add_argument("-d", "--dataset", default="",
                       help="timm dataset type ('', ImageFolder or folder: the ImageFolder root's split folders)")
    group.add_argument("--train-split", default="train")
    group.add_argument("--val-split", default="val")
    group = parser.add_argument_group("model")
    group.add_argument("--model", default="vit_3dtrl_tiny_patch16_224", help="timm model name")
    group.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False, help="start from timm's pretrained backbone")
    group.add_argument("--initial-checkpoint", default="", help="load these weights before training")
    group.add_argument("--resume", default="", help="continue from this checkpoint (model, optimizer, epoch)")
    group.add_argument("--no-resume-opt", action="store_true", help="do not restore the optimizer on --resume")
    group.add_argument("--num-classes", type=int, default=None, help="default: the number of class folders")
    group.add_argument("--gp", default=None, help="global pool type (timm)")
    group.add_argument("--img-size", type=int, default=None, help="input image side")
    group.add_argument("--input-size", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                       help="input size (timm): overrides --img-size for the data; the model takes H")
    group.add_argument("--crop-pct", type=float, default=None, help="validation centre crop fraction")
    group.add_argument("--mean", type=float, nargs=3, default=None, help="input normalisation (default: the model's)")
    group.add_argument("--std", type=float, nargs=3, default=None, help="input normalisation (default: the model's)")
    group.add_argument("--interpolation", default="", help="resize interpolation for validation")
    group.add_argument("-b", "--batch-size", type=int, default=128, help="batch size per process")
    group.add_argument("-vb", "--validation-batch-size", type=int, default=None)
    group.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False, help="channels-last memory layout")
    group.add_argument("--fast-norm", action="store_true", help="timm's fast (low-precision under AMP) normalisation")
    group.add_argument("--torchcompile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                       help="torch.compile the model (backend, default inductor)")
    group.add_argument("--torchcompile-mode", default=None, help="torch.compile mode, e.g. max-autotune")
    group.add_argument("--model-kwargs", nargs="*", default={}, action=ParseKwargs,
                       help="extra model arguments, KEY=VALUE (e.g. patch_size=8 depth=6)")
    group.add_argument("--trl-depth", type=int, default=None, help="3DTRL models: block index of the 3DTRL layer")
    group.add_argument("--npl-depth", "--npl_depth", type=int, default=None, help="the release's name for --trl-depth")
    group.add_argument("--cat", action=argparse.BooleanOptionalAction, default=False, help="3DTRL models: concatenate the 3D embedding (cat variant)")
    group.add_argument("--grad-checkpointing", action="store_true", help="recompute activations in the backward pass")
    group = parser.add_argument_group("optimizer")
    group.add_argument("--opt", default="adamw")
    group.add_argument("--opt-eps", type=float, default=None)
    group.add_argument("--opt-betas", type=float, nargs="+", default=None)
    group.add_argument("--momentum", type=float, default=0.9)
    group.add_argument("--weight-decay", type=float, default=0.05)
    group.add_argument("--clip-grad", type=float, default=None, help="gradient clipping value (off if unset)")
    group.add_argument("--clip-mode", default="norm", choices=("norm", "value", "agc"))
    group.add_argument("--layer-decay", type=float, default=None)
    group = parser.add_argument_group("schedule")
    group.add_argument("--sched", default="cosine")
    group.add_argument("--sched-on-updates", action="store_true", help="step the schedule every update")
    group.add_argument("--lr", type=float, default=5e-4)
    group.add_argument("--warmup-lr", type=float, default=1e-5)
    group.add_argument("--min-lr", type=float, default=0.0)
    group.add_argument("--epochs", type=int, default=300)
    group.add_argument("--start-epoch", type=int, default=None)
    group.add_argument("--decay-epochs", type=float, default=90)
    group.add_argument("--decay-milestones", type=int, nargs="+", default=[30, 60], metavar="EPOCH",
                       help="multistep schedule: the epochs at which the rate is multiplied by --decay-rate")
    group.add_argument("--decay-rate", "--dr", type=float, default=0.1)
    group.add_argument("--patience-epochs", type=int, default=10, help="plateau schedule: epochs without progress")
    group.add_argument("--lr-noise", type=float, nargs="+", default=None, metavar="PCT",
                       help="learning-rate noise on/off epochs as fractions of --epochs")
    group.add_argument("--lr-noise-pct", type=float, default=0.67)
    group.add_argument("--lr-noise-std", type=float, default=1.0)
    group.add_argument("--lr-cycle-mul", type=float, default=1.0)
    group.add_argument("--lr-cycle-decay", type=float, default=0.5, help="lr factor per cycle (the release's default)")
    group.add_argument("--lr-cycle-limit", type=int, default=1)
    group.add_argument("--lr-k-decay", type=float, default=1.0)
    group.add_argument("--warmup-epochs", type=int, default=5)
    group.add_argument("--warmup-prefix", action="store_true")
    group.add_argument("--cooldown-epochs", type=int, default=0, help="epochs at --min-lr after --epochs")
    group = parser.add_argument_group("augmentation and regularisation")
    group.add_argument("--no-aug", action="store_true")
    group.add_argument("--scale", type=float, nargs=2, default=[0.08, 1.0])
    group.add_argument("--ratio", type=float, nargs=2, default=[3.0 / 4.0, 4.0 / 3.0])
    group.add_argument("--hflip", type=float, default=0.5)
    group.add_argument("--vflip", type=float, default=0.0)
    group.add_argument("--color-jitter", type=float, default=0.4)
    group.add_argument("--aa", default=None, help="auto augment policy, e.g. rand-m9-mstd0.5-inc1")
    group.add_argument("--reprob", type=float, default=0.0, help="random erasing probability")
    group.add_argument("--remode", default="pixel", choices=("pixel", "rand", "const"), help="random erasing fill")
    group.add_argument("--recount", type=int, default=1)
    group.add_argument("--mixup", type=float, default=0.0, help="mixup alpha")
    group.add_argument("--cutmix", type=float, default=0.0, help="cutmix alpha")
    group.add_argument("--cutmix-minmax", type=float, nargs=2, default=None)
    group.add_argument("--mixup-prob", type=float, default=1.0)
    group.add_argument("--mixup-switch-prob", type=float, default=0.5)
    group.add_argument("--mixup-mode", default="batch", choices=("batch", "pair", "elem"))
    group.add_argument("--mixup-off-epoch", type=int, default=0, help="turn mixup/cutmix off from this epoch")
    group.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    group.add_argument("--train-interpolation", default="random")
    group.add_argument("--drop", type=float, default=0.0, help="dropout rate")
    group.add_argument("--drop-path", type=float, default=None, help="stochastic depth rate")
    group.add_argument("--drop-connect", type=float, default=None, help="timm 0.6's older name for --drop-path")
    group.add_argument("--aug-repeats", type=float, default=0, help="repeated-augmentation sampler: copies per image")
    group = parser.add_argument_group("model EMA")
    group.add_argument("--model-ema", action=argparse.BooleanOptionalAction, default=False, help="keep an exponential moving average of the weights")
    group.add_argument("--model-ema-decay", type=float, default=0.9998)
    group.add_argument("--model-ema-warmup", action=argparse.BooleanOptionalAction, default=False, help="ramp the EMA decay up from 0")
    group.add_argument("--model-ema-force-cpu", action="store_true", help="keep the EMA on the CPU (not validated)")
    group.add_argument("--model-ema-eval", action=argparse.BooleanOptionalAction, default=True,
                       help="with --model-ema, the EMA weights' validation steps the schedule and picks "
                            "model_best, as in the release (timm); --no-model-ema-eval: the raw weights'")
    group = parser.add_argument_group("run")
    group.add_argument("--seed", type=int, default=42)
    group.add_argument("--log-interval", type=int, default=50, help="batches between TensorBoard loss points")
    group.add_argument("--checkpoint-hist", type=int, default=10, help="numbered checkpoints to keep")
    group.add_argument("-j", "--workers", type=int, default=4, help="data loading processes per training process")
    group.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False, help="mixed precision (CUDA only)")
    group.add_argument("--amp-dtype", default="float16", choices=("float16", "bfloat16"))
    group.add_argument("--native-amp", action="store_true", help="the release's name for --amp")
    group.add_argument("--sync-bn", action="store_true", help="synchronised BatchNorm across processes")
    group.add_argument("--no-ddp-bb", action="store_true", help="DDP does not broadcast buffers")
    group.add_argument("--pin-mem", action=argparse.BooleanOptionalAction, default=False)
    group.add_argument("--no-prefetcher", action="store_true", help="CUDA: no timm prefetcher")
    group.add_argument("--output", default="output/train", help="parent folder of the experiment folder")
    group.add_argument("--experiment", default="", help="experiment folder name (default: config or model name)")
    group.add_argument("--eval-metric", default="top1", choices=("top1", "top5", "loss"))
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    group.add_argument("--check-only", action="store_true",
                       help="check flags, config, data folder and model, then exit (used by i1k.sh)")
    add_inert_flags(parser, INERT_TRAIN, "release flags without effect here")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    args, config, notes = parse_with_config(build_parser(), argv, config_only=CONFIG_ONLY)
    args.release_notes = notes + check_inert(args, INERT_TRAIN, [*config, *given_flags(argv)])
    args.amp = args.amp or args.native_amp
    if args.drop_connect is not None and args.drop_path is None:
        args.drop_path = args.drop_connect
    if args.input_size is not None and args.img_size is None:
        args.img_size = args.input_size[-1]
    if args.dataset.lower() in ("imagefolder", "folder"):
        args.dataset = ""
    if not args.data_dir:
        raise UserError("the data folder (first positional argument, or data_dir in the config) is required")
    try:
        args.trl_depth = resolve_trl_depth(args.trl_depth, args.npl_depth)
    except ValueError:
        raise UserError(f"--trl-depth {args.trl_depth} and --npl-depth {args.npl_depth} disagree") from None
    args.scale, args.ratio = float_pair(args.scale, "--scale"), float_pair(args.ratio, "--ratio")
    args.cutmix_minmax = float_pair(args.cutmix_minmax, "--cutmix-minmax")
    check_training_values(args)
    check_timm_settings(args, training=True)
    if args.torchcompile:
        check_compile_options(args.torchcompile, args.torchcompile_mode)
    for flag, path in (("--resume", args.resume), ("--initial-checkpoint", args.initial_checkpoint)):
        checkpoint = load_checkpoint_file(path, f"{flag} checkpoint") if path else {}
        if not isinstance(checkpoint, dict):
            raise UserError(f"{flag} {path} is not a checkpoint or state dict")
        if flag == "--resume" and path and not {"state_dict", "epoch"} <= set(checkpoint):
            raise UserError(f"--resume {path} holds no training state (weights, optimizer and epoch of a run): "
                            f"start from its weights with --initial-checkpoint instead")
    if not args.experiment:
        args.experiment = os.path.splitext(os.path.basename(args.config))[0] if args.config else args.model
    return args


# ----------------------------------------------------------------------------- setup

def join_runtime(args: argparse.Namespace) -> Runtime:
    """Join the process group started by torchrun (NCCL with CUDA, gloo otherwise); the ranks are
    also kept in ``args`` (and so in ``args.yaml`` and the checkpoints), as timm does."""
    rt = init_runtime("auto")
    args.world_size, args.rank, args.local_rank, args.distributed = rt.world, rt.rank, rt.local_rank, rt.distributed
    return rt


def experiment_dir(args: argparse.Namespace) -> str:
    """``--output/<experiment>``; refuses to start over an earlier run unless resuming it."""
    out = os.path.join(args.output, args.experiment)
    if os.path.isfile(os.path.join(out, "last.pth.tar")) and not args.resume:
        raise UserError(f"{out} already holds a run: pass --resume {os.path.join(out, 'last.pth.tar')} "
                        f"to continue it, or another --experiment")
    return out


def create_datasets(args: argparse.Namespace):
    """timm datasets for train and val, after checking the folders; also returns the class names."""
    if not args.dataset:  # an ImageFolder root: unreadable images stop the run, naming the file
        check_image_folder(args.data_dir, args.train_split, args.val_split)
        train = StrictImageFolder(split_folder(args.data_dir, args.train_split))
        val = StrictImageFolder(split_folder(args.data_dir, args.val_split))
    else:
        train = create_dataset(args.dataset, root=args.data_dir, split=args.train_split, is_training=True,
                               batch_size=args.batch_size, seed=args.seed)
        val = create_dataset(args.dataset, root=args.data_dir, split=args.val_split, is_training=False,
                             batch_size=args.batch_size)
    class_to_idx = train.reader.class_to_idx
    return train, val, sorted(class_to_idx, key=class_to_idx.get)


def check_batches(args: argparse.Namespace, num_images: int) -> None:
    """Training drops the last incomplete batch, so every process needs at least one full batch."""
    if num_images // args.world_size < args.batch_size:
        raise UserError(f"--batch-size {args.batch_size} per process is larger than the {num_images} training "
                        f"images shared by {args.world_size} process(es): no full batch per epoch")


def create_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    return build_classifier(args.model, num_classes, img_size=args.img_size, trl_depth=args.trl_depth, cat=args.cat,
                            pretrained=args.pretrained, model_kwargs=args.model_kwargs,
                            drop_rate=args.drop, drop_path_rate=args.drop_path, global_pool=args.gp)


def create_loaders(args, dataset_train, dataset_val, data_config: dict, device: torch.device):
    prefetch = device.type == "cuda" and not args.no_prefetcher
    common = dict(input_size=data_config["input_size"], mean=data_config["mean"], std=data_config["std"],
                  num_workers=args.workers, distributed=args.distributed, pin_memory=args.pin_mem,
                  device=device, use_prefetcher=prefetch, persistent_workers=False)
    train = create_loader(
        dataset_train, batch_size=args.batch_size, is_training=True, no_aug=args.no_aug, re_prob=args.reprob,
        num_aug_repeats=int(args.aug_repeats),
        re_mode=args.remode, re_count=args.recount, scale=args.scale, ratio=args.ratio, hflip=args.hflip,
        vflip=args.vflip, color_jitter=args.color_jitter, auto_augment=args.aa,
        interpolation=data_config["interpolation"] if args.no_aug or not args.train_interpolation
        else args.train_interpolation, **common)
    val = create_loader(
        dataset_val, batch_size=args.validation_batch_size or args.batch_size, is_training=False,
        interpolation=data_config["interpolation"], crop_pct=data_config["crop_pct"], **common)
    return train, val


def create_mixup(args: argparse.Namespace, num_classes: int) -> Optional[Mixup]:
    if not (args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None):
        return None
    if args.batch_size % 2:
        raise UserError(f"mixup/cutmix need an even --batch-size, got {args.batch_size}")
    return Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                 prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                 label_smoothing=args.smoothing, num_classes=num_classes)


def train_loss_fn(args: argparse.Namespace, mixup: Optional[Mixup]) -> torch.nn.Module:
    if mixup is not None:
        return SoftTargetCrossEntropy()  # mixup already smooths the targets
    if args.smoothing:
        return LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    return torch.nn.CrossEntropyLoss()


# ----------------------------------------------------------------------------- resuming and validating

def apply_lr_on_resume(optimizer: torch.optim.Optimizer, args: argparse.Namespace) -> None:
    """The schedule of a resumed run starts from ``--lr``: the restored optimizer keeps the base
    learning rate it was created with (timm's ``initial_lr``), which a new ``--lr`` replaces, with a
    line saying so."""
    before = {group.get("initial_lr") for group in optimizer.param_groups}
    if before != {args.lr}:
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"] = args.lr
        if args.rank == 0:
            _logger.info("--lr %g applied to the resumed run (its checkpoint ran with %s)", args.lr,
                         ", ".join(f"{lr:g}" for lr in sorted(v for v in before if v is not None)) or "another lr")


def validate(model, loader, args: argparse.Namespace, device, autocast: Callable, desc: str = "val") -> Dict[str, float]:
    """The epoch's validation metrics kept in ``metrics.json``: loss, top-1 and top-5."""
    metrics = evaluate(model, loader, device, autocast, channels_last=args.channels_last,
                       progress=not args.no_progress, rank=args.rank, desc=desc)
    return {key: metrics[key] for key in ("loss", "top1", "top5")}


# ----------------------------------------------------------------------------- main

def main(argv=None) -> None:
    args = parse_args(argv)
    if args.check_only:  # WORLD_SIZE: the number of processes the run will have (set by i1k.sh)
        args.world_size, args.rank, args.distributed = int(os.environ.get("WORLD_SIZE", 1)), 0, False
        out_dir = experiment_dir(args)
        check_output_dir(out_dir)
        dataset_train, _, class_names = create_datasets(args)
        create_model(args, args.num_classes or len(class_names))
        check_batches(args, len(dataset_train))
        print(f"ok: {len(class_names)} classes in {args.data_dir}, model {args.model}")
        print(f"output: {out_dir}")  # read by i1k.sh (any characters in the path)
        return
    rt = join_runtime(args)
    setup_logging(rt.rank)
    if rt.rank == 0:
        log_notes(args.release_notes)
    try:
        train(args, rt.device)
    finally:
        rt.close()


def build_model(args: argparse.Namespace, num_classes: int, device: torch.device) -> torch.nn.Module:
    """The model on ``device`` with its start weights, before DDP and compilation wrap it."""
    if args.fast_norm:
        set_fast_norm()
    model = create_model(args, num_classes)
    if args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if args.initial_checkpoint:  # the raw weights, as timm's create_model(checkpoint_path=...) loads them
        load_weights(model, args.initial_checkpoint, use_ema=False, what="--initial-checkpoint")
    _logger.info("%s: %.2fM parameters, %d classes, %d processes on %s", args.model,
                 sum(p.numel() for p in model.parameters()) / 1e6, num_classes, args.world_size, device.type)
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    if args.distributed and args.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def resume_run(args: argparse.Namespace, model, optimizer, loss_scaler) -> Tuple[int, Optional[ModelEmaV3]]:
    """The epoch to start from and the EMA model (None without ``--model-ema``); with ``--resume``
    the model, optimizer, loss scaler and EMA weights continue from the checkpoint."""
    start_epoch = args.start_epoch or 0
    if args.resume:
        try:
            resumed = resume_checkpoint(model, args.resume, optimizer=None if args.no_resume_opt else optimizer,
                                        loss_scaler=loss_scaler, log_info=args.rank == 0)
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise UserError(f"--resume {args.resume} is not a checkpoint of {args.model} as configured: "
                            f"{str(err).splitlines()[0]}") from None
        start_epoch = resumed if args.start_epoch is None and resumed is not None else start_epoch
        if not args.no_resume_opt:
            apply_lr_on_resume(optimizer, args)
    model_ema = None
    if args.model_ema:
        model_ema = ModelEmaV3(model, decay=args.model_ema_decay, use_warmup=args.model_ema_warmup,
                               device="cpu" if args.model_ema_force_cpu else None)
        if args.resume:
            load_checkpoint(model_ema.module, args.resume, use_ema=True)
    return start_epoch, model_ema


def create_schedule(args: argparse.Namespace, optimizer, updates_per_epoch: int, start_epoch: int):
    """timm's scheduler, advanced to ``start_epoch``, and the number of epochs (cooldown included)."""
    scheduler, num_epochs = create_scheduler_v2(optimizer, **scheduler_kwargs(args),
                                                updates_per_epoch=updates_per_epoch)
    if start_epoch > 0:
        if args.sched_on_updates:
            scheduler.step_update(start_epoch * updates_per_epoch)
        else:
            scheduler.step(start_epoch)
    if start_epoch >= num_epochs:
        raise UserError(f"nothing to do: the run starts at epoch {start_epoch} of {num_epochs}")
    return scheduler, num_epochs


def train(args: argparse.Namespace, device: torch.device) -> None:
    out_dir = experiment_dir(args)
    check_output_dir(out_dir)  # another run writing there is refused before any data is read
    seed_everything(args.seed + args.rank)
    dataset_train, dataset_val, class_names = create_datasets(args)
    num_classes = args.num_classes or len(class_names)
    if num_classes < len(class_names):
        raise UserError(f"--num-classes {num_classes} is smaller than the {len(class_names)} class folders")
    args.num_classes, args.class_names = num_classes, class_names

    model = build_model(args, num_classes, device)
    data_config = resolve_data_config(vars(args), model=model, verbose=args.rank == 0)
    autocast, loss_scaler, args.amp = amp_policy(args.amp, args.amp_dtype, device)
    optimizer = create_optimizer_v2(model, **optimizer_kwargs(cfg=args))
    start_epoch, model_ema = resume_run(args, model, optimizer, loss_scaler)
    if args.distributed:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                        **({"broadcast_buffers": False} if args.no_ddp_bb else {}))
    if args.torchcompile:  # after DDP, as timm does; checkpoints keep the plain module's keys
        model = compile_model(model, args.torchcompile, args.torchcompile_mode)

    check_batches(args, len(dataset_train))
    loader_train, loader_val = create_loaders(args, dataset_train, dataset_val, data_config, device)
    mixup = create_mixup(args, num_classes)
    loss_fn = train_loss_fn(args, mixup).to(device)
    scheduler, num_epochs = create_schedule(args, optimizer, len(loader_train), start_epoch)
    records = RunRecords(args, out_dir, model, optimizer, model_ema, loss_scaler, start_epoch) \
        if args.rank == 0 else None
    _logger.info("training epochs %d..%d (%d + %d cooldown), %d updates per epoch, output %s", start_epoch,
                 num_epochs - 1, args.epochs, num_epochs - args.epochs, len(loader_train), out_dir)

    num_updates = start_epoch * len(loader_train)
    for epoch in range(start_epoch, num_epochs):
        # Every random draw of an epoch follows from (seed, rank, epoch), so a resumed run repeats
        # the epochs of the uninterrupted one (loader workers are started afresh every epoch).
        seed_everything(epoch_seed(args.seed, args.rank, epoch))
        if args.distributed and hasattr(loader_train.sampler, "set_epoch"):
            loader_train.sampler.set_epoch(epoch)
        train_metrics, num_updates = train_one_epoch(
            epoch, model, loader_train, optimizer, loss_fn, args, device, autocast, loss_scaler, scheduler,
            num_updates, mixup=mixup, model_ema=model_ema, writer=records.writer if records else None)
        eval_metrics = validate(model, loader_val, args, device, autocast)
        if validates_ema(args):
            ema_metrics = validate(model_ema.module, loader_val, args, device, autocast, desc="val ema")
            eval_metrics.update({f"ema_{k}": v for k, v in ema_metrics.items()})
        check_finite(eval_metrics, f"after epoch {epoch}")
        check_finite_weights(unwrap_model(model), f"after epoch {epoch}")
        selected = eval_metrics[selected_metric(args)]
        scheduler.step(epoch + 1, selected)
        if records is not None:
            records.add_epoch(epoch, optimizer.param_groups[0]["lr"], train_metrics, eval_metrics, selected)
    if records is not None:
        records.close()


if __name__ == "__main__":
    run_cli(main)
