#!/usr/bin/env python3
"""Evaluate a classification checkpoint: top-1/top-5 on an ImageFolder, optionally viewpoint-perturbed.

    python imagenet_val.py /data/imagenet --model vit_3dtrl_tiny_patch16_224 \
        --checkpoint output/train/vit_3dtrl_1k_scratch/model_best.pth.tar [--perturbed] [--results-file F]

DATA_DIR is an ImageFolder root with a ``val/`` folder (``--split``), or the split folder itself.
``--perturbed`` warps every image with a random perspective (black fill, same size) before the
usual resize and centre crop; the warp of image i depends only on (``--perturb-seed``, i).
Model settings not given (image size, classes, 3DTRL depth, model arguments) come from the
training arguments stored in the checkpoint.
"""
import argparse
import os
import time
from typing import Callable

import compat  # noqa: F401  (must precede the first timm/torchvision import)
import torch
from timm.data import create_loader, resolve_data_config
from timm.models import load_checkpoint
from timm.utils import accuracy

from classification.cli import CliParser, ParseKwargs
from classification.data import PERTURB_DISTORTION, PERTURB_SEED, PerturbedImages, StrictImageFolder, class_folders
from classification.models import build_classifier
from runtime import (UserError, amp_policy, compile_model, load_checkpoint_file, progress_bar, resolve_device, run_cli,
                     write_json_atomic)


def parse_args(argv=None) -> argparse.Namespace:
    parser = CliParser(description="Evaluate a classification checkpoint (top-1/top-5).")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="ImageFolder root (with val/) or a split folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--model", default=None, help="timm model name (default: the checkpoint's)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint file (.pth.tar)")
    parser.add_argument("--use-ema", action="store_true", help="evaluate the EMA weights stored in the checkpoint")
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--crop-pct", type=float, default=None)
    parser.add_argument("--interpolation", default="")
    parser.add_argument("--trl-depth", type=int, default=None)
    parser.add_argument("--model-kwargs", nargs="*", default=None, action=ParseKwargs)
    parser.add_argument("-b", "--batch-size", type=int, default=256)
    parser.add_argument("-j", "--workers", type=int, default=4)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--torchcompile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                        help="torch.compile the model (backend, default inductor)")
    parser.add_argument("--perturbed", action="store_true", help="evaluate the viewpoint-perturbed copy")
    parser.add_argument("--perturb-seed", type=int, default=PERTURB_SEED)
    parser.add_argument("--perturb-distortion", type=float, default=PERTURB_DISTORTION,
                        help="corner displacement as a fraction of half the image side")
    parser.add_argument("--results-file", default="", help="write the results here as JSON")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise UserError(f"checkpoint not found: {args.checkpoint}")
    if not 0 <= args.perturb_distortion < 1:
        raise UserError(f"--perturb-distortion must be in [0, 1), got {args.perturb_distortion}")
    return args


def load_training_args(path: str) -> dict:
    """The training arguments stored by imagenet_train.py (empty for a bare state dict). The file is
    read with tensors and plain data only, so nothing in it can run code."""
    checkpoint = load_checkpoint_file(path)
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} is not a checkpoint or state dict (it holds a {type(checkpoint).__name__})")
    stored = checkpoint.get("args")
    return dict(vars(stored)) if isinstance(stored, argparse.Namespace) else dict(stored or {})


def split_folder(data_dir: str, split: str) -> str:
    if not os.path.isdir(data_dir):
        raise UserError(f"data folder not found: {data_dir}")
    folder = os.path.join(data_dir, split)
    return folder if os.path.isdir(folder) else data_dir


def main(argv=None) -> None:
    args = parse_args(argv)
    trained = load_training_args(args.checkpoint)
    name = args.model or trained.get("model")
    if not name:
        raise UserError(f"{args.checkpoint} does not name its model: pass --model")
    folder = split_folder(args.data_dir, args.split)
    classes = class_folders(folder)
    trained_classes = trained.get("class_names")
    if trained_classes and sorted(classes) != sorted(trained_classes):
        raise UserError(f"class folders in {folder} differ from the {len(trained_classes)} classes "
                        f"the checkpoint was trained on")
    num_classes = args.num_classes or trained.get("num_classes") or len(classes)
    if len(classes) > num_classes:
        raise UserError(f"{folder} has {len(classes)} class folders but the model has {num_classes} outputs")
    same_model = name == trained.get("model")
    net = build_classifier(
        name, num_classes,
        img_size=args.img_size or (trained.get("img_size") if same_model else None),
        trl_depth=args.trl_depth if args.trl_depth is not None else (trained.get("trl_depth") if same_model else None),
        cat=trained.get("cat") if same_model else None,
        model_kwargs=args.model_kwargs if args.model_kwargs is not None else
        (trained.get("model_kwargs") if same_model else None),
        global_pool=trained.get("gp") if same_model else None)
    try:
        load_checkpoint(net, args.checkpoint, use_ema=args.use_ema)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise UserError(f"{args.checkpoint} does not fit {name}: {str(err).splitlines()[0]}") from None

    device = resolve_device("auto", local_rank=0)
    autocast, _, _ = amp_policy(args.amp, "bfloat16", device)
    net.to(device).eval()
    if args.channels_last:
        net.to(memory_format=torch.channels_last)
    data_config = resolve_data_config(
        dict(img_size=args.img_size or (trained.get("img_size") if same_model else None),
             crop_pct=args.crop_pct or (trained.get("crop_pct") if same_model else None),
             interpolation=args.interpolation or (trained.get("interpolation") if same_model else "")),
        model=net)
    dataset = StrictImageFolder(folder)
    if trained_classes:
        order = sorted(dataset.reader.class_to_idx, key=dataset.reader.class_to_idx.get)
        if order != list(trained_classes):
            raise UserError(f"class folders in {folder} are ordered differently from the checkpoint's classes")
    if args.perturbed:
        dataset = PerturbedImages(dataset, seed=args.perturb_seed, distortion=args.perturb_distortion)
    loader = create_loader(dataset, input_size=data_config["input_size"], batch_size=args.batch_size,
                           interpolation=data_config["interpolation"], mean=data_config["mean"],
                           std=data_config["std"], crop_pct=data_config["crop_pct"], num_workers=args.workers,
                           use_prefetcher=False, device=device, persistent_workers=False)
    if args.torchcompile:
        net = compile_model(net, args.torchcompile)
    results = evaluate(net, loader, device, autocast, args, num_classes)
    results.update(model=name, checkpoint=args.checkpoint, data=folder, num_images=len(dataset),
                   img_size=data_config["input_size"][-1], use_ema=args.use_ema, perturbed=args.perturbed,
                   perturb=dict(seed=args.perturb_seed, distortion=args.perturb_distortion) if args.perturbed else None)
    print(f"top1 {results['top1']:.3f} top5 {results['top5']:.3f}")
    if args.results_file:
        write_json_atomic(results, args.results_file)


@torch.no_grad()
def evaluate(net, loader, device, autocast: Callable, args, num_classes: int) -> dict:
    """Top-1/top-5 accuracy (%) and mean cross-entropy over ``loader``."""
    top_k = min(5, num_classes)
    correct1 = correct_k = loss_sum = count = 0.0
    start = time.perf_counter()
    for images, targets in progress_bar(loader, "eval", enabled=not args.no_progress):
        images, targets = images.to(device), targets.to(device)
        if args.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = net(images).float()
        acc1, acc_k = accuracy(logits, targets, topk=(1, top_k))
        n = images.shape[0]
        correct1 += acc1.item() * n / 100
        correct_k += acc_k.item() * n / 100
        loss_sum += torch.nn.functional.cross_entropy(logits, targets).item() * n
        count += n
    return {"top1": 100 * correct1 / count, "top5": 100 * correct_k / count, "loss": loss_sum / count,
            "img_per_s": count / (time.perf_counter() - start)}


if __name__ == "__main__":
    run_cli(main)
