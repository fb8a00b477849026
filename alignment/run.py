"""One alignment run of ``multiview_video_alignment.py``: its data splits, model config, training
state and checkpoints (``AlignmentRun``, resumed from ``last.pth``), the test of its best model, and
the test of a given checkpoint alone (``run_test_only``). The flags are the script's (``args``)."""
import argparse
import dataclasses
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from model import load_weights
from data_pipeline import (FPV, IMAGENET_MEAN, IMAGENET_STD, ClipDataset, TrajectoryDataset, TripletDataset,
                           open_split, resolve_dataset)
from data_pipeline.ground_truth import TokenTargets
from threedtrl.runtime import (OutputLayout, Runtime, UserError, check_finite_weights, compile_model,
                               save_checkpoint_atomic, seed_everything, write_json_atomic)
from threedtrl.visualization.alignment_report import geometry_stats, plot_alignment

from .embedder import (MODEL_DEFAULTS, checkpoint_model_cfg, create_embedder, freeze_first_groups, init_from_file,
                       load_checkpoint)
from .engine import WeightEnsemble, train_one_epoch
from .evaluation import evaluate, per_view_means
from .geometry_objectives import GEOMETRY_LOSSES
from .sampler import EpochSampler


def normalisation(args: argparse.Namespace) -> Tuple[Optional[list], Optional[list]]:
    """The model config's mean/std: None keeps the model's own (start points that record it)."""
    if args.mean is None and args.std is None and not args.init:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    return args.mean, args.std


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
