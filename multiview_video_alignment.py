"""Multi-view video alignment on FTPV data: time-contrastive training of a ViT (with or without 3DTRL).

Frames of the same moment seen from different cameras (and the robot's own first-person
camera) should embed close together, frames far apart in time far apart. The embedding is
judged by how well it aligns two synchronised videos (alignment error, cycle error, Kendall's
tau, averaged over every view pair of every trajectory).

    python multiview_video_alignment.py --data panda --model vit_3dtrl             # the release's recipe
    python multiview_video_alignment.py --data panda --train_views 6 --img_size 64 --loss npairs --depth 4 \
        --trl_depth 1 --global_pool avg --views_per_clip 0 --clip_frames 10 --batch_size 2 \
        --triplets_per_epoch 32 --lr 1e-3 --epochs 30                                 # the CPU demo's recipe
    torchrun --nproc_per_node 4 multiview_video_alignment.py --data can ...   # DDP over view pairs
    python multiview_video_alignment.py --test --output_dir OUT                # evaluate OUT/best.pth
"""
import argparse
import os
import sys
from typing import Optional, Sequence, Tuple

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)

from threedtrl.alignment.embedder import MODEL_ALIASES, check_model_name, recorded_normalisation
from threedtrl.alignment.geometry_objectives import add_geometry_arguments, check_geometry_args
from threedtrl.alignment.losses import LOSSES
from threedtrl.alignment.run import run_test_only, train
from data_pipeline import FRAME_RESIZE, count_dataset_views, resolve_dataset
from data_pipeline.datasets import VIEW_DISTORTION
from threedtrl.runtime import (COUNT, FINITE, NOT_NEGATIVE, POSITIVE, PROBABILITY, UserError, check_compile_options,
                               check_flag_ranges, check_output_dir, check_range, init_runtime, run_cli,
                               seed_everything)


# ----------------------------------------------------------------------------- command line

# The values a run can work with, by kind of range (see runtime.check_range); flags without their dashes.
VALUE_RANGES = (
    (COUNT, ("batch_size", "img_size", "eval_batch_size")),
    (NOT_NEGATIVE, ("epochs", "patience", "num_workers", "triplets_per_epoch", "patch_size", "depth", "trl_depth",
                    "clip_frames", "views_per_clip", "freeze_groups", "label_sigma")),
    (POSITIVE, ("lr", "temperature", "std")),
    (PROBABILITY, ("wise_alpha",)),
    (FINITE, ("mean",)),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Multi-view video alignment on FTPV data (3DTRL or plain ViT).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="panda",
                   help="FTPV data set: panda, mc, can, lift, pouring, or the release's names (Pandav1_Train_Frame, "
                        "a name with 'mine', can_mh, lift_mh, Pouring: the folder of that name)")
    p.add_argument("--data_root", default="data/ftpv", help="folder holding the data set folders")
    p.add_argument("--train_views", type=int, default=-1,
                   help="-1 (or at least the number of views): seen setting (all views everywhere); k: train/val "
                        "on third-person views 0..k-1, test on the rest (unseen setting)")
    p.add_argument("--train_videos", type=int, default=-1,
                   help="keep the first n training videos of Pouring (-1: all), as in the release")
    p.add_argument("--train_videos_everywhere", action="store_true",
                   help="--train_videos cuts the training videos of every data set, not only Pouring's")
    p.add_argument("--release_pouring_val", action="store_true",
                   help="Pouring: validate on the release's 10 videos, which it also trained on (the paper's "
                        "split); default: the last 10 of train.pkl, left out of training")
    p.add_argument("--batch_size", type=int, default=1, help="triplets (npairs: clips) per step and process")
    p.add_argument("--model", default="vit_3dtrl_tiny_patch16_224",
                   help="any timm model name, or vit_3dtrl (ViT-T + 3DTRL) / deit_tcn (the same ViT without it)")
    p.add_argument("--patch_size", type=int, default=0, help="ViT patch size (0: the model's)")
    p.add_argument("--depth", type=int, default=0, help="ViT blocks (0: the model's)")
    p.add_argument("--global_pool", default="", choices=("", "token", "avg"),
                   help="ViT embedding: the CLS token (token) or the mean of the patch tokens (avg); '': the model's")
    p.add_argument("--trl_depth", type=int, default=0,
                   help="3DTRL: index of the block it is inserted before (0: the model's, 4 of 12)")
    p.add_argument("--pred_depth", type=int, default=1, choices=(0, 1), help="3DTRL: estimate depth (1) or not (0)")
    p.add_argument("--pred_campos_from", default=None, choices=("both-sep", "both-avg", "cls", "tok"),
                   help="3DTRL: tokens the camera pose is estimated from (default: the model's, both-sep for ViT "
                        "and TnT, tok for Swin)")
    p.add_argument("--pretrained", action="store_true", help="start from locally available timm weights")
    p.add_argument("--init", default=None, metavar="FILE",
                   help="start from the weights in FILE: a checkpoint of imagenet_train.py, of this script or a "
                        "timm/state-dict file; the classifier is dropped, the position embedding resized, and the "
                        "keys left at their initialisation are reported")
    p.add_argument("--wise_alpha", type=float, default=1.0, metavar="A",
                   help="weight-space ensemble (WiSE-FT): validate, keep (best.pth) and test A x the trained weights "
                        "+ (1 - A) x the weights before training (--init, --pretrained or the initialisation); "
                        "1: the trained weights alone")
    p.add_argument("--freeze_groups", type=int, default=0, metavar="N",
                   help="train without the first N of the model's parameter groups (timm's group_matcher: the stem, "
                        "then one group per block, 3DTRL with the block it feeds); 0: train everything")
    p.add_argument("--test", nargs="?", const="best", default=None, metavar="CHECKPOINT",
                   help="only evaluate a checkpoint on the test split (default OUTPUT_DIR/best.pth)")
    p.add_argument("--lr", type=float, default=1e-6, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--note", default="", help="tag appended to the default output folder name")
    p.add_argument("--xpar", action="store_true", help="turn progress bars off")
    p.add_argument("--img_size", type=int, default=224, help="frames are resized to this square size")
    p.add_argument("--frame_resize", default="pil", choices=FRAME_RESIZE,
                   help="resize of frames of another size: pil (bicubic, antialiased, as the release) or opencv "
                        "(bicubic, not antialiased)")
    p.add_argument("--mean", type=float, nargs=3, default=None,
                   help="input normalisation; default: what the --init file was trained with where it records it, "
                        "else ImageNet's (0.485 0.456 0.406), as the release")
    p.add_argument("--std", type=float, nargs=3, default=None, help="see --mean (ImageNet: 0.229 0.224 0.225)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=10,
                   help="stop after this many epochs without a better validation alignment error")
    p.add_argument("--start_can_be_best", action="store_true",
                   help="the start weights (epoch 0, validated before training) compete for best.pth; default: "
                        "only trained epochs, as in the release")
    p.add_argument("--items_per_epoch", "--triplets_per_epoch", dest="triplets_per_epoch", type=int, default=0,
                   help="training items drawn anew every epoch: triplets (--loss triplet) or clips (--loss npairs); "
                        "0: all of them (view pairs x anchors, or view pairs x trajectories); --triplets_per_epoch, "
                        "its earlier name, still works")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the training step's model (backend, default inductor)")
    p.add_argument("--output_dir", default=None,
                   help="default output/alignment/<data>_<model>_<seen|unseenK>_seed<seed>[_<note>]")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue from a checkpoint (default OUTPUT_DIR/last.pth)")
    p.add_argument("--num_workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--eval_batch_size", type=int, default=128, help="frames per forward pass when evaluating")
    p.add_argument("--loss", default="triplet", choices=LOSSES,
                   help="triplet: the release's time-contrastive triplet loss on raw embeddings; npairs: the "
                        "multi-view n-pairs (InfoNCE) loss on L2-normalised embeddings over time-aligned clips "
                        "of several views (same instant = positive, the clip's other instants = negatives)")
    p.add_argument("--release_loss", action="store_true",
                   help="triplet loss as in the release: view 2's positive and negative are taken from view 1")
    p.add_argument("--temperature", type=float, default=0.1, help="npairs: softmax temperature")
    p.add_argument("--label_sigma", type=float, default=0.0,
                   help="npairs: 0: only the same instant is a positive; > 0: Gaussian soft targets over the "
                        "clip's instants with this standard deviation in frames")
    p.add_argument("--center_in_time", action="store_true",
                   help="npairs: compare a video's frames by their embeddings minus the video's mean embedding "
                        "(per view, in training and evaluation), taking out what a camera sees in every frame; "
                        "the recipe for scenes the start point never saw (make demo FTPV_ROOT=DIR)")
    p.add_argument("--augment_views", action="store_true",
                   help="npairs: every view of a training clip gets a random viewpoint change of its own (a "
                        "perspective warp and a mirror image), so that the cameras trained on stand for more")
    p.add_argument("--augment_distortion", type=float, default=None, metavar="D",
                   help=f"--augment_views: the warp moves each corner inwards by up to D x half the image's side, "
                        f"0 < D < 1 (default {VIEW_DISTORTION})")
    add_geometry_arguments(p)
    p.add_argument("--clip_frames", type=int, default=0,
                   help="npairs: frames per clip (0: all frames of the shortest training trajectory)")
    p.add_argument("--views_per_clip", type=int, default=2,
                   help="npairs: views per clip, every ordered pair of them a term of the loss (0: all views)")
    p.add_argument("--overwrite", action="store_true",
                   help="train into an --output_dir that holds a finished run, replacing it")
    # The release's multi-GPU flags: processes are started with torchrun here.
    p.add_argument("--distributed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--gpus", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--address", default="localhost", help=argparse.SUPPRESS)
    p.add_argument("--port", default="64751", help=argparse.SUPPRESS)
    return p


def torchrun_hint(args: argparse.Namespace, argv: Sequence[str]) -> str:
    """The torchrun command equivalent to the release's ``--distributed 1 --gpus N`` launch."""
    skip = {"--distributed", "--gpus", "--address", "--port"}
    rest, drop = [], False
    for token in argv:
        if drop:
            drop = False
            continue
        name = token.split("=")[0]
        if name in skip:
            drop = "=" not in token
            continue
        rest.append(token)
    return (f"torchrun --nproc_per_node {args.gpus} --master_addr {args.address} --master_port {args.port} "
            f"multiview_video_alignment.py {' '.join(rest)}").strip()


def check_args(args: argparse.Namespace, argv: Sequence[str]) -> None:
    if args.distributed:
        raise UserError(f"--distributed is launched with torchrun here: {torchrun_hint(args, argv)}")
    args.model = MODEL_ALIASES.get(args.model, args.model)
    if args.test is None:
        check_model_name(args.model)  # before minutes of decoding
    data_key = resolve_dataset(args.data)[0]
    if args.train_videos > 0 and data_key != "pouring" and not args.train_videos_everywhere:
        print(f"--train_videos {args.train_videos}: no effect on {args.data}, as in the release (it cuts Pouring "
              f"only); add --train_videos_everywhere to cut it")
    if args.release_pouring_val and data_key != "pouring":
        raise UserError(f"--release_pouring_val applies to Pouring, not to {args.data}")
    if args.init:
        args.mean, args.std = init_normalisation(args)
    if args.train_views > 0 and args.test is None:
        seen_if_all_views(args)
    check_flag_ranges(args, VALUE_RANGES, separator="_")
    if args.release_loss and args.loss != "triplet":
        raise UserError("--release_loss is a variant of --loss triplet")
    if args.augment_distortion is None:
        args.augment_distortion = VIEW_DISTORTION
    elif not args.augment_views:
        raise UserError("--augment_distortion sets the warp of --augment_views: give both")
    else:
        check_range("--augment_distortion", args.augment_distortion, 0, 1, open_low=True, open_high=True)
    for flag in ("center_in_time", "augment_views", "geometry_loss"):
        if getattr(args, flag) and args.loss != "npairs":
            raise UserError(f"--{flag} works on the clips of the n-pairs loss: use it with --loss npairs")
    check_geometry_args(args)
    if args.compile:
        check_compile_options(args.compile)
    if args.output_dir is None:
        setting = "seen" if args.train_views == -1 else f"unseen{args.train_views}"
        name = f"{args.data}_{args.model}_{setting}_seed{args.seed}" + (f"_{args.note}" if args.note else "")
        args.output_dir = os.path.join("output", "alignment", name)
    check_output_dir(args.output_dir)  # another run writing there is refused before any data is read


def init_normalisation(args: argparse.Namespace) -> Tuple[Optional[list], Optional[list]]:
    """``--mean``/``--std`` for a run that starts from ``--init``: as given, else as the file records
    (a start point keeps the inputs it was trained on), else ImageNet's (the release's)."""
    if args.mean is not None or args.std is not None:
        return args.mean, args.std
    recorded = recorded_normalisation(args.init)
    return recorded if recorded is not None else (None, None)


def seen_if_all_views(args: argparse.Namespace) -> None:
    """``--train_views`` of at least the data set's number of views is the seen setting (-1), as in
    the release."""
    num_views = count_dataset_views(args.data_root, args.data)
    if args.train_views >= num_views:
        print(f"--train_views {args.train_views}: the data set has {num_views} third-person views, so this is "
              f"the seen setting (-1), as in the release")
        args.train_views = -1


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    check_args(args, argv)
    rt = init_runtime(args.device)
    try:
        seed_everything(args.seed)
        if args.test is not None:
            run_test_only(args, rt)
        else:
            train(args, rt)
    finally:
        rt.close()


if __name__ == "__main__":
    run_cli(main)
