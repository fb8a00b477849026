#!/usr/bin/env python3
"""Evaluate a classification checkpoint: top-1/top-5 on an ImageFolder, optionally viewpoint-perturbed.

    python imagenet_val.py /data/imagenet --model vit_3dtrl_tiny_patch16_224 \
        --checkpoint output/train/vit_3dtrl_1k_scratch/model_best.pth.tar [--perturbed] [--results-file F]

DATA_DIR is an ImageFolder root with a ``val/`` folder (``--split``), or the split folder itself.
``--perturbed`` warps every image with a random perspective (black fill, same size) before the
usual resize and centre crop; the warp of image i depends only on (``--perturb-seed``, i).
``--cameras FILE`` (a 3DTRL model on images rendered by ``tools/render_objects.py``, whose
``cameras.csv`` records each image's camera) also compares the camera the layer estimates for every
image with the true one: relative rotations of image pairs of one class (docs/geometry.md).
Model settings not given (image size, classes, 3DTRL depth, model arguments) come from the
training arguments stored in the checkpoint.
"""
import argparse
import csv
import os
import re
import sys
from typing import List, Optional, Tuple

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)
import numpy as np
import torch
from timm.data import create_loader, resolve_data_config
from timm.layers import set_fast_norm

from threedtrl.classification.cli import DATA_RANGES, CliParser, ParseKwargs, check_timm_settings
from threedtrl.classification.engine import evaluate
from threedtrl.classification.data import (PERTURB_DISTORTION, PERTURB_SEED, PerturbedImages, StrictImageFolder, class_folders,
                                           split_folder)
from threedtrl.classification.models import build_classifier
from threedtrl.classification.release_args import INERT_VAL, add_inert_flags, check_inert, given_flags, log_notes
from backbone.camera import CameraEstimator
from model import checkpoint_state_dict, load_checkpoint_weights
from model.tnt_3dtrl import tnt_layout_kwargs
from threedtrl.visualization.geometry_eval import format_table, object_camera_scores, orbit_camera_rotations
from threedtrl.runtime import (FRACTION, UserError, amp_policy, check_flag_ranges, check_output_dir, compile_model,
                               load_checkpoint_file, resolve_device, run_cli, write_json_atomic)


def parse_args(argv=None) -> argparse.Namespace:
    parser = CliParser(description="Evaluate a classification checkpoint (top-1/top-5).")
    parser.add_argument("data_dir", metavar="DATA_DIR", help="ImageFolder root (with val/) or a split folder")
    parser.add_argument("--split", default="val", help="split folder (validation finds val/, as in timm 0.6)")
    parser.add_argument("-m", "--model", default=None, help="timm model name (default: the checkpoint's)")
    parser.add_argument("--checkpoint", default="",
                        help="checkpoint file (.pth.tar), or a folder: every *.pth.tar and *.pth in it")
    parser.add_argument("--pretrained", action="store_true",
                        help="evaluate timm's pretrained weights of --model (from the local cache) instead")
    parser.add_argument("--use-ema", action=argparse.BooleanOptionalAction, default=True,
                        help="evaluate the checkpoint's EMA weights where it has them, as the release always "
                             "does; --no-use-ema: the raw weights")
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--input-size", type=int, nargs=3, default=None, metavar=("C", "H", "W"))
    parser.add_argument("--num-classes", type=int, default=None)
    parser.add_argument("--gp", default=None, help="global pool type (default: the checkpoint's)")
    parser.add_argument("--crop-pct", type=float, default=None)
    parser.add_argument("--mean", type=float, nargs=3, default=None, help="default: the training run's, else the model's")
    parser.add_argument("--std", type=float, nargs=3, default=None, help="default: the training run's, else the model's")
    parser.add_argument("--interpolation", default="")
    parser.add_argument("--trl-depth", "--npl-depth", "--npl_depth", dest="trl_depth", type=int, default=None,
                        help="3DTRL models: block index of the layer (default: the checkpoint's)")
    parser.add_argument("--model-kwargs", nargs="*", default=None, action=ParseKwargs)
    parser.add_argument("-b", "--batch-size", type=int, default=256)
    parser.add_argument("-j", "--workers", type=int, default=4)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--fast-norm", action="store_true", help="timm's fast (low-precision under AMP) normalisation")
    parser.add_argument("--use-train-size", action="store_true",
                        help="timm's flag: evaluate at the training input size, which is what is done here anyway")
    parser.add_argument("--torchcompile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                        help="torch.compile the model (backend, default inductor)")
    parser.add_argument("--perturbed", action="store_true", help="evaluate the viewpoint-perturbed copy")
    parser.add_argument("--perturb-seed", type=int, default=PERTURB_SEED)
    parser.add_argument("--perturb-distortion", type=float, default=PERTURB_DISTORTION,
                        help="corner displacement as a fraction of half the image side")
    parser.add_argument("--cameras", default="", metavar="CSV",
                        help="3DTRL models: the cameras.csv of tools/render_objects.py; the layer's cameras are "
                             "compared with the true ones (results: cameras)")
    parser.add_argument("--results-file", default="", help="write the results here as JSON")
    parser.add_argument("--no-progress", action="store_true")
    add_inert_flags(parser, INERT_VAL, "release flags without effect here", extra_options={"dataset": ["-d"]})
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.dataset and args.dataset.lower() in ("imagefolder", "folder"):
        args.dataset = ""
    args.release_notes = check_inert(args, INERT_VAL, given_flags(argv))
    if args.input_size is not None and args.img_size is None:
        args.img_size = args.input_size[-1]
    if not args.checkpoint and not args.pretrained:
        raise UserError("--checkpoint FILE (or a folder of checkpoints) or --pretrained is required")
    if args.checkpoint and not os.path.exists(args.checkpoint):
        raise UserError(f"checkpoint not found: {args.checkpoint}")
    if args.results_file:  # checked before the evaluation, not after it
        if os.path.isdir(args.results_file):
            raise UserError(f"--results-file {args.results_file} is a folder; give a file name")
        check_output_dir(os.path.dirname(os.path.abspath(args.results_file)), run_folder=False)
    if args.cameras and not os.path.isfile(args.cameras):
        raise UserError(f"--cameras file not found: {args.cameras}")
    if args.cameras and args.perturbed:
        raise UserError("--cameras compares the cameras the images were rendered from: not with --perturbed")
    check_flag_ranges(args, DATA_RANGES + ((FRACTION, ("perturb_distortion",)),))
    check_timm_settings(args, training=False)
    return args


def read_checkpoint(path: str) -> dict:
    """The checkpoint at ``path`` (a training checkpoint or a bare state dict), read with tensors and
    plain data only, so nothing in it can run code."""
    checkpoint = load_checkpoint_file(path)
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} is not a checkpoint or state dict (it holds a {type(checkpoint).__name__})")
    return checkpoint


def training_args(checkpoint: dict) -> dict:
    """The training arguments stored by imagenet_train.py (empty for a bare state dict)."""
    stored = checkpoint.get("args")
    return dict(vars(stored)) if isinstance(stored, argparse.Namespace) else dict(stored or {})


def checkpoint_files(path: str) -> List[str]:
    """``path`` itself, or the ``*.pth.tar`` and ``*.pth`` files of a folder in natural order (as the
    release's evaluation takes a folder)."""
    if not os.path.isdir(path):
        return [path]
    files = [os.path.join(path, f) for f in os.listdir(path) if f.endswith((".pth.tar", ".pth"))]
    if not files:
        raise UserError(f"no *.pth.tar or *.pth checkpoints in {path}")
    return sorted(files, key=lambda f: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", f)])


def main(argv=None) -> None:
    args = parse_args(argv)
    log_notes(args.release_notes)
    if args.fast_norm:
        set_fast_norm()
    if args.pretrained:
        results = evaluate_checkpoint(args, "")
    else:
        results = [evaluate_checkpoint(args, path) for path in checkpoint_files(args.checkpoint)]
        results = results[0] if not os.path.isdir(args.checkpoint) else results
    if args.results_file:
        write_json_atomic(results, args.results_file)


def evaluate_checkpoint(args: argparse.Namespace, path: str) -> dict:
    """Evaluate the checkpoint at ``path`` (or timm's pretrained weights of ``--model`` when
    ``path`` is empty); model and data settings not given come from its training arguments."""
    checkpoint = read_checkpoint(path) if path else {}
    trained = training_args(checkpoint)
    name = args.model or trained.get("model")
    if not name:
        raise UserError(f"{path} does not name its model: pass --model")
    folder, num_classes = eval_folder(args, trained)
    same = trained if name == trained.get("model") else {}  # a run's settings apply to its own model only
    net, used_ema = build_eval_model(args, name, num_classes, checkpoint, path, same)
    device = resolve_device("auto", local_rank=0)
    autocast, _, _ = amp_policy(args.amp, "bfloat16", device)
    net.to(device).eval()
    if args.channels_last:
        net.to(memory_format=torch.channels_last)
    dataset, loader, data_config = eval_loader(args, net, folder, same, trained.get("class_names"), device)
    truth = true_cameras(args.cameras, dataset, args.split) if args.cameras else None
    rotations: List[torch.Tensor] = []
    hook = camera_estimator(net, name).register_forward_hook(
        lambda _module, _inputs, output: rotations.append(output[0].detach().float().cpu())) if truth else None
    if args.torchcompile:
        net = compile_model(net, args.torchcompile)
    results = evaluate(net, loader, device, autocast, channels_last=args.channels_last, progress=not args.no_progress)
    if hook is not None:
        hook.remove()
        results["cameras"] = object_camera_scores(torch.cat(rotations).numpy(), *truth)
        print(format_table(results["cameras"]))
    results.update(model=name, checkpoint=path or "pretrained", data=folder, num_images=len(dataset),
                   img_size=data_config["input_size"][-1], weights="ema" if used_ema else "raw",
                   mean=list(data_config["mean"]), std=list(data_config["std"]), crop_pct=data_config["crop_pct"],
                   interpolation=data_config["interpolation"], perturbed=args.perturbed,
                   perturb=dict(seed=args.perturb_seed, distortion=args.perturb_distortion) if args.perturbed else None)
    print(f"{path or name}: top1 {results['top1']:.3f} top5 {results['top5']:.3f} ({results['weights']} weights)")
    return results


def eval_folder(args: argparse.Namespace, trained: dict) -> Tuple[str, int]:
    """The split's class folder and the model's number of outputs, checked against the classes the
    checkpoint was trained on."""
    if not os.path.isdir(args.data_dir):
        raise UserError(f"data folder not found: {args.data_dir}")
    folder = split_folder(args.data_dir, args.split)
    folder = folder if os.path.isdir(folder) else args.data_dir  # DATA_DIR may be the split folder itself
    classes = class_folders(folder)
    trained_classes = trained.get("class_names")
    if trained_classes and sorted(classes) != sorted(trained_classes):
        raise UserError(f"class folders in {folder} differ from the {len(trained_classes)} classes "
                        f"the checkpoint was trained on")
    num_classes = args.num_classes or trained.get("num_classes") or len(classes)
    if len(classes) > num_classes:
        raise UserError(f"{folder} has {len(classes)} class folders but the model has {num_classes} outputs")
    return folder, num_classes


def build_eval_model(args: argparse.Namespace, name: str, num_classes: int, checkpoint: dict, path: str,
                     same: dict) -> Tuple[torch.nn.Module, bool]:
    """The model as trained (flags first, then the run's settings ``same``) with the checkpoint's
    weights; also whether they were its EMA weights."""
    model_kwargs = dict(args.model_kwargs if args.model_kwargs is not None else (same.get("model_kwargs") or {}))
    if name.startswith("tnt_3dtrl") and "legacy" not in model_kwargs and checkpoint:
        model_kwargs.update(tnt_layout_kwargs(checkpoint_state_dict(checkpoint)[0]))
    net = build_classifier(
        name, num_classes, img_size=args.img_size or same.get("img_size"),
        trl_depth=args.trl_depth if args.trl_depth is not None else same.get("trl_depth"), cat=same.get("cat"),
        model_kwargs=model_kwargs, global_pool=args.gp or same.get("gp"), pretrained=args.pretrained)
    used_ema = load_checkpoint_weights(net, checkpoint, path, use_ema=args.use_ema, adapt_classifier=False) \
        if path else False
    return net, used_ema


def eval_loader(args: argparse.Namespace, net: torch.nn.Module, folder: str, same: dict,
                trained_classes: Optional[List[str]], device: torch.device):
    """The dataset (perturbed with ``--perturbed``), its loader and timm's data config (preprocessing
    from the flags, else the run's settings, else the model's)."""
    data_config = resolve_data_config(
        dict(img_size=args.img_size or same.get("img_size"), input_size=args.input_size or same.get("input_size"),
             crop_pct=args.crop_pct or same.get("crop_pct"), mean=args.mean or same.get("mean"),
             std=args.std or same.get("std"), interpolation=args.interpolation or same.get("interpolation") or ""),
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
    return dataset, loader, data_config


def camera_estimator(net: torch.nn.Module, name: str) -> torch.nn.Module:
    """The 3DTRL layer's camera estimator in ``net`` (the one module that estimates each image's camera)."""
    found = [m for m in net.modules() if isinstance(m, CameraEstimator)]
    if len(found) != 1:
        raise UserError(f"--cameras needs a model with one 3DTRL layer; {name} has {len(found)}")
    return found[0]


def true_cameras(path: str, dataset, split: str) -> Tuple[np.ndarray, List[str]]:
    """World-to-camera rotations ``(M, 3, 3)`` and classes of the images of ``dataset`` in its order, from
    ``cameras.csv`` (rows ``split,class,file,azimuth_deg,elevation_deg,distance_radii``)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    needed = {"split", "class", "file", "azimuth_deg", "elevation_deg"}
    if not rows or not needed <= set(rows[0]):
        raise UserError(f"{path} is not a cameras.csv of tools/render_objects.py (columns {sorted(needed)})")
    try:
        angles = {(r["class"], r["file"]): (float(r["azimuth_deg"]), float(r["elevation_deg"]))
                  for r in rows if r["split"] == split}
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None
    keys = []
    for index in range(len(dataset)):
        image = dataset.reader.filename(index, absolute=True)
        keys.append((os.path.basename(os.path.dirname(image)), os.path.basename(image)))
    missing = [k for k in keys if k not in angles]
    if missing:
        raise UserError(f"{path} has no {split} camera for {os.path.join(*missing[0])}")
    azimuth, elevation = np.array([angles[k] for k in keys]).T
    return orbit_camera_rotations(azimuth, elevation), [c for c, _ in keys]


if __name__ == "__main__":
    run_cli(main)
