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
import dataclasses
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

import model  # noqa: F401  (registers the 3DTRL models with timm)
from model import load_weights
from threedtrl.alignment.embedder import (MODEL_ALIASES, MODEL_DEFAULTS, check_model_name, checkpoint_model_cfg,
                                          create_embedder, freeze_first_groups, init_from_file, load_checkpoint,
                                          recorded_normalisation)
from threedtrl.alignment.engine import WeightEnsemble, train_one_epoch
from threedtrl.alignment.geometry_objectives import GEOMETRY_LOSSES, add_geometry_arguments, check_geometry_args
from threedtrl.alignment.evaluation import evaluate, per_view_means
from threedtrl.alignment.losses import LOSSES
from threedtrl.alignment.sampler import EpochSampler
from data_pipeline import (FPV, FRAME_RESIZE, IMAGENET_MEAN, IMAGENET_STD, ClipDataset, TrajectoryDataset,
                           TripletDataset, count_dataset_views, open_split, resolve_dataset)
from threedtrl.runtime import (COUNT, FINITE, NOT_NEGATIVE, POSITIVE, PROBABILITY, OutputLayout, Runtime, UserError,
                               check_compile_options, check_finite_weights, check_flag_ranges, check_output_dir,
                               check_range, compile_model, init_runtime, run_cli, save_checkpoint_atomic,
                               seed_everything, write_json_atomic)
from threedtrl.visualization.alignment_report import geometry_stats, plot_alignment
from data_pipeline.datasets import VIEW_DISTORTION
from data_pipeline.ground_truth import TokenTargets


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


def normalisation(args: argparse.Namespace) -> Tuple[Optional[list], Optional[list]]:
    """The model config's mean/std: None keeps the model's own (start points that record it)."""
    if args.mean is None and args.std is None and not args.init:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    return args.mean, args.std


def seen_if_all_views(args: argparse.Namespace) -> None:
    """``--train_views`` of at least the data set's number of views is the seen setting (-1), as in
    the release."""
    num_views = count_dataset_views(args.data_root, args.data)
    if args.train_views >= num_views:
        print(f"--train_views {args.train_views}: the data set has {num_views} third-person views, so this is "
              f"the seen setting (-1), as in the release")
        args.train_views = -1


# ----------------------------------------------------------------------------- data, checkpoints, runs

def videos_to_keep(args: argparse.Namespace) -> int:
    """``--train_videos`` where it applies: Pouring, or every set with ``--train_videos_everywhere``."""
    applies = resolve_dataset(args.data)[0] == "pouring" or args.train_videos_everywhere
    return args.train_videos if applies else -1


def load_split(args: argparse.Namespace, split: str, train_views: int, progress: bool
               ) -> Tuple[TrajectoryDataset, List[int]]:
    trajectories, views = open_split(args.data_root, args.data, split, train_views, videos_to_keep(args),
                                     args.release_pouring_val)
    if split != "train":  # Kendall's tau and the errors compare at least two frames
        short = next((t for t in trajectories if t.num_frames < 2), None)
        if short is not None:
            raise UserError(f"{split} trajectory {short.path} has {short.num_frames} frame: evaluation needs at least 2")
    data = TrajectoryDataset(trajectories, args.img_size, cache=True, threads=2, progress=progress,
                             desc=f"decode {split}", resize=args.frame_resize, shared=args.num_workers > 0)
    return data, views


def view_names(views: Sequence[int]) -> List[str]:
    return [FPV] + [f"view_{v}" for v in views]


def model_cfg(args: argparse.Namespace) -> Dict:
    """What rebuilds the model: ``MODEL_DEFAULTS``' keys from the arguments."""
    cfg = {key: getattr(args, key) for key in MODEL_DEFAULTS if key not in ("normalize_embedding", "mean", "std")}
    cfg["normalize_embedding"] = args.loss == "npairs"
    cfg["mean"], cfg["std"] = normalisation(args)
    return cfg


def test_sets(args: argparse.Namespace, progress: bool) -> Dict[str, Tuple[TrajectoryDataset, List[int]]]:
    """``test`` (the setting's test views) and, in the unseen setting, ``test_seen_views``
    (the same trajectories from the training cameras)."""
    sets = {"test": load_split(args, "test", args.train_views, progress)}
    if args.train_views != -1:
        trajectories, views = open_split(args.data_root, args.data, "test", -1, videos_to_keep(args))
        train_views = list(range(args.train_views))
        trajectories = [dataclasses.replace(t, view_dirs=t.view_dirs[:1 + args.train_views]) for t in trajectories]
        sets["test_seen_views"] = (TrajectoryDataset(trajectories, args.img_size, progress=progress,
                                                     desc="decode test (seen views)", resize=args.frame_resize),
                                   train_views)
    return sets


def format_metrics(metrics: Dict[str, float]) -> str:
    return (f"alignment error {metrics['alignment_error']:.4f}  cycle error {metrics['cycle_error']:.4f}  "
            f"Kendall's tau {metrics['kendalls_tau']:+.4f}")


def format_per_view(view_pairs: List[Dict]) -> str:
    means = per_view_means(view_pairs)
    return "alignment error per view (mean over its pairs): " + "  ".join(
        f"{view} {value:.3f}" for view, value in means.items())


def output_layout(args: argparse.Namespace) -> OutputLayout:
    """The release's layout: ``last.pth``, ``best.pth`` and ``results.json`` in ``--output_dir``,
    TensorBoard scalars in ``tb/``."""
    return OutputLayout(args.output_dir, checkpoints="", tensorboard="tb", results="results.json")


def run_test_only(args: argparse.Namespace, rt: Runtime) -> None:
    layout = output_layout(args)
    path = layout.checkpoint("best.pth") if args.test == "best" else args.test
    ckpt = load_checkpoint(path)
    if "model_cfg" in ckpt or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        cfg = checkpoint_model_cfg(ckpt, path)
        for key in MODEL_DEFAULTS:
            setattr(args, key, cfg[key])
        embedder = create_embedder(cfg).to(rt.device)
        embedder.net.load_state_dict(ckpt["model"])
    else:  # a bare state dict, as the release saves its models: the model is the one the flags describe
        cfg = model_cfg(args)
        embedder = create_embedder(cfg)
        load_weights(embedder.net, path, what="--test checkpoint")
        embedder.to(rt.device)
        ckpt = {"epoch": None}
    progress = rt.main and not args.xpar
    results = {"checkpoint": path, "epoch": ckpt.get("epoch"), "views": {}, "view_pairs": {}}
    sets = test_sets(args, progress)
    for name, (data, views) in sets.items():
        results["views"][name] = view_names(views)
        results[name], results["view_pairs"][name] = evaluate(embedder, data, rt, args.eval_batch_size, progress,
                                                              name, results["views"][name])
        if rt.main:
            print(f"{name:16s} {format_metrics(results[name])}")
            print(f"{'':16s} {format_per_view(results['view_pairs'][name])}")
    if rt.main:
        data, views = sets["test"]
        layout.prepare()
        results["plot"] = os.path.join(layout.root, "alignment_test.png")
        plot_alignment(embedder, data, view_names(views), rt.device, args.eval_batch_size, results["plot"])
        write_json_atomic(results, os.path.join(layout.root, "test.json"))
        print(f"results: {os.path.join(layout.root, 'test.json')}\nplot:    {results['plot']}")


@dataclasses.dataclass
class TrainingState:
    """What ``last.pth`` keeps to continue a run (as a plain dict, under ``state``)."""
    epoch: int = 0                        # epochs trained
    best: Optional[Dict] = None           # {"epoch", "val"} of the model in best.pth (None: no epoch kept yet)
    bad_epochs: int = 0                   # epochs since the validation alignment error last improved
    history: List[Dict] = dataclasses.field(default_factory=list)  # one record per epoch, epoch 0 first
    initial: Optional[Dict] = None        # validation and test metrics before training

    @classmethod
    def from_dict(cls, state: Dict) -> "TrainingState":
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})

    def add_epoch(self, record: Dict) -> bool:
        """Record a trained epoch; True when its validation alignment error is the best so far."""
        improved = self.best is None or record["val"]["alignment_error"] < self.best["val"]["alignment_error"]
        self.epoch = record["epoch"]
        self.history.append(record)
        self.bad_epochs = 0 if improved else self.bad_epochs + 1
        if improved:
            self.best = {"epoch": record["epoch"], "val": record["val"]}
        return improved


class AlignmentRun:
    """One training run: its data, model, optimizer and output folder, resumed from ``last.pth``
    with ``--resume``."""

    def __init__(self, args: argparse.Namespace, rt: Runtime):
        self.args, self.rt = args, rt
        self.progress = rt.main and not args.xpar
        self.train_data, self.train_views = load_split(args, "train", args.train_views, self.progress)
        self.val_data, self.val_views = load_split(args, "val", args.train_views, self.progress)
        self.tests = test_sets(args, self.progress)
        seed_everything(args.seed)
        self.embedder = create_embedder(dict(model_cfg(args), pretrained=args.pretrained)).to(rt.device)
        self.items, self.sampler, self.loader = self.training_items()
        self.init_report = init_from_file(self.embedder.net, args.init) if args.init and not args.resume else None
        if self.init_report and rt.main:
            report = self.init_report
            print(f"initialised from {args.init}: {report['loaded']} tensors loaded, "
                  f"{len(report['left_at_init'])} left at their initialisation"
                  + (f" ({', '.join(report['left_at_init'])})" if report["left_at_init"] else ""))
        frozen = freeze_first_groups(self.embedder.net, args.freeze_groups)
        if frozen and rt.main:
            print(f"--freeze_groups {args.freeze_groups}: {frozen} tensors are not trained")
        self.optimizer = torch.optim.Adam([p for p in self.embedder.parameters() if p.requires_grad], lr=args.lr)
        self.state = TrainingState()
        self.layout = output_layout(args)
        self.last_path, self.best_path = self.layout.checkpoint("last.pth"), self.layout.checkpoint("best.pth")
        if not args.resume and not args.overwrite and os.path.isfile(self.last_path):
            raise UserError(f"{args.output_dir} already holds a run: pass --resume to continue it, --overwrite to "
                            f"replace it, or another --output_dir")
        if rt.main:
            self.layout.prepare()
        wise_start = self.resume() if args.resume else None  # the weights before training, for --wise_alpha
        self.ensemble = WeightEnsemble(self.embedder.net, args.wise_alpha, wise_start)
        self.trainer = DistributedDataParallel(self.embedder) if rt.world > 1 else self.embedder
        if args.compile:
            self.trainer = compile_model(self.trainer, args.compile)
        self.writer = self.layout.tensorboard_writer() if rt.main else None

    def training_items(self) -> Tuple[object, EpochSampler, DataLoader]:
        """The training items (n-pairs clips or triplets), the epoch's random subset of them and the loader."""
        args, rt = self.args, self.rt
        if args.loss == "npairs":
            targets = None
            if "oracle" in args.geometry_loss:
                targets = TokenTargets(self.train_data.trajectories, self.embedder.net.patch_embed.grid_size)
            items = ClipDataset(self.train_data, args.clip_frames, args.views_per_clip, seed=args.seed,
                                augment=args.augment_views, distortion=args.augment_distortion, targets=targets)
        else:
            items = TripletDataset(self.train_data, resolve_dataset(args.data)[1].window, seed=args.seed)
        sampler = EpochSampler(len(items), args.seed, rt.rank, rt.world, args.triplets_per_epoch)
        # Workers are started afresh every epoch so that they see the epoch's draws
        # (the frame cache lives in shared memory, so this copies nothing).
        loader = DataLoader(items, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers,
                            pin_memory=rt.device.type == "cuda", persistent_workers=False)
        return items, sampler, loader

    def resume(self) -> Optional[Dict[str, torch.Tensor]]:
        """Load the model, optimizer and state of ``--resume``; returns the run's --wise_alpha start weights."""
        args = self.args
        resume_path = self.last_path if args.resume == "auto" else args.resume
        ckpt = load_checkpoint(resume_path)
        if checkpoint_model_cfg(ckpt, resume_path) != model_cfg(args) or "state" not in ckpt:
            raise UserError(f"{resume_path} was trained with {checkpoint_model_cfg(ckpt, resume_path)}, "
                            f"not {model_cfg(args)}, or holds no training state")
        for flag, default in (("wise_alpha", 1.0), ("freeze_groups", 0)):
            trained = ckpt.get("args", {}).get(flag, default)
            if trained != getattr(args, flag):
                raise UserError(f"{resume_path} was trained with --{flag} {trained}, not {getattr(args, flag)}")
        self.embedder.net.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        trained_lr = ckpt.get("args", {}).get("lr", args.lr)
        if trained_lr != args.lr:  # the restored optimizer would keep the old rate: --lr wins, and says so
            for group in self.optimizer.param_groups:
                group["lr"] = args.lr
            if self.rt.main:
                print(f"--lr {args.lr:g} applied to the resumed run (its checkpoint ran with {trained_lr:g})")
        self.state = TrainingState.from_dict(ckpt["state"])
        return ckpt.get("wise_start")

    def evaluate(self, data: TrajectoryDataset, name: str, views: Optional[List[str]] = None):
        """The metrics of ``data`` (and, given its view names, its view pairs: see ``evaluate``)."""
        return evaluate(self.embedder, data, self.rt, self.args.eval_batch_size, self.progress, name, views)

    def save(self, improved: bool) -> None:
        """``last.pth`` (to resume) and, when the epoch improved, ``best.pth`` (the validated model:
        the ensemble with the start point where --wise_alpha asks for it)."""
        if not self.rt.main:
            return
        best = self.state.best
        payload = {"model_cfg": model_cfg(self.args), "epoch": self.state.epoch, "val": best["val"] if best else None,
                   "args": vars(self.args)}
        if improved:
            save_checkpoint_atomic(dict(payload, model=self.ensemble.state_dict()), self.best_path)
        training = dict(payload, model=self.embedder.net.state_dict(), optimizer=self.optimizer.state_dict(),
                        state=dataclasses.asdict(self.state))
        if self.ensemble.start is not None:
            training["wise_start"] = self.ensemble.start
        save_checkpoint_atomic(training, self.last_path)

    def log(self, epoch: int, record: Dict) -> None:
        """TensorBoard scalars of an epoch (and, for 3DTRL, what it recovers on the validation split)."""
        if self.writer is None:
            return
        for key in ("train_loss", "data_wait_share", "items_per_s") + tuple(f"{n}_loss" for n in GEOMETRY_LOSSES):
            if key in record:
                self.writer.add_scalar(f"train/{key}", record[key], epoch)
        for key, value in record["val"].items():
            self.writer.add_scalar(f"val/{key}", value, epoch)
        if hasattr(self.embedder.net, "three_d_trl"):
            stats = geometry_stats(self.embedder, self.val_data, self.val_views, self.rt.device,
                                   self.args.eval_batch_size)
            for key, value in stats.items():
                self.writer.add_scalar(f"geometry/{key}", value, epoch)
        self.writer.flush()

    def validate_start(self) -> None:
        """Epoch 0: the start weights on the validation and test splits."""
        val = self.evaluate(self.val_data, "val")
        self.state.initial = {name: self.evaluate(data, name) for name, (data, _) in self.tests.items()}
        self.state.initial["val"] = val
        self.state.history.append({"epoch": 0, "val": val})
        # The release keeps the best trained epoch: the start weights are only a fallback for --epochs 0.
        start_competes = self.args.start_can_be_best or self.args.epochs == 0
        self.state.best = {"epoch": 0, "val": val} if start_competes else None
        self.log(0, self.state.history[-1])
        if self.rt.main:
            print(f"epoch 0 (before training): val {format_metrics(val)}")
        self.save(improved=start_competes)

    def train_epoch(self) -> None:
        epoch = self.state.epoch + 1
        self.sampler.set_epoch(epoch)
        self.items.set_epoch(epoch)
        start = time.perf_counter()
        record = {"epoch": epoch, **train_one_epoch(self.trainer, self.loader, self.optimizer, self.rt.device,
                                                    self.args, self.progress, epoch)}
        record["train_loss"] = self.rt.all_sum([record["train_loss"]])[0] / self.rt.world
        check_finite_weights(self.embedder.net, f"after epoch {epoch}")
        with self.ensemble.applied():  # validation and its TensorBoard record see the model that best.pth keeps
            record["val"] = self.evaluate(self.val_data, "val")
            record["seconds"] = time.perf_counter() - start
            self.log(epoch, record)
        improved = self.state.add_epoch(record)
        if self.rt.main:
            terms = "".join(f" ({n} {record[f'{n}_loss']:.4f})" for n in GEOMETRY_LOSSES if f"{n}_loss" in record)
            print(f"epoch {epoch}: loss {record['train_loss']:.4f}{terms}  val {format_metrics(record['val'])}"
                  f"{'  (best)' if improved else ''}  [{record['seconds']:.0f}s, "
                  f"{record['data_wait_share']:.1%} waiting for data]")
        self.save(improved)

    def test(self) -> None:
        """The best model on the test sets; writes results.json and the nearest-frame plot."""
        rt, state = self.rt, self.state
        best = load_checkpoint(self.best_path) if rt.main else None
        rt.barrier()
        if not rt.main:
            best = load_checkpoint(self.best_path)
        self.embedder.net.load_state_dict(best["model"])
        args = self.args
        results = {"test": None, "val": state.best["val"], "best_epoch": state.best["epoch"],
                   "epochs": state.history, "initial": state.initial, "data": args.data, "init": self.init_report,
                   "setting": "seen" if args.train_views == -1 else "unseen", "model": args.model,
                   "views": {"train": view_names(self.train_views)}, "view_pairs": {}, "config": vars(args)}
        for name, (data, views) in self.tests.items():
            results["views"][name] = view_names(views)
            results[name], results["view_pairs"][name] = self.evaluate(data, name, results["views"][name])
            if self.writer is not None:
                for key, value in results[name].items():
                    self.writer.add_scalar(f"{name}/{key}", value, state.best["epoch"])
        if rt.main:
            data, views = self.tests["test"]
            results["plot"] = os.path.join(self.layout.root, "alignment_test.png")
            plot_alignment(self.embedder, data, view_names(views), rt.device, args.eval_batch_size, results["plot"])
            self.layout.write_results(results)
            self.writer.close()
            print_summary(results, self.layout)


def train(args: argparse.Namespace, rt: Runtime) -> None:
    run = AlignmentRun(args, rt)
    if run.state.initial is None:
        run.validate_start()
    while run.state.epoch < args.epochs and run.state.bad_epochs < args.patience:
        run.train_epoch()
    run.test()


def print_summary(results: Dict, layout: OutputLayout) -> None:
    """Test metrics before and after training, and where the outputs are."""
    names = [n for n in ("test_seen_views", "test") if n in results]
    labels = {"test": "unseen views" if results["setting"] == "unseen" else "all views",
              "test_seen_views": "seen views"}
    print(f"\ntest split, best epoch {results['best_epoch']} (val alignment error "
          f"{results['val']['alignment_error']:.4f}):")
    print(f"  {'views':14s} {'':8s} {'align. err':>10s} {'cycle err':>10s} {'tau':>8s} {'tau-b':>8s}")
    for name in names:
        for when, metrics in (("before", results["initial"][name]), ("after", results[name])):
            print(f"  {labels[name]:14s} {when:8s} {metrics['alignment_error']:10.4f} "
                  f"{metrics['cycle_error']:10.4f} {metrics['kendalls_tau']:+8.4f} "
                  f"{metrics.get('kendalls_tau_b', float('nan')):+8.4f}")
    for name in names:
        print(f"  {labels[name]}, {format_per_view(results['view_pairs'][name])}")
    print(f"results: {layout.results_path}")
    print(f"plot:    {results['plot']}")
    print(f"curves:  tensorboard --logdir {layout.tensorboard_dir}")


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
