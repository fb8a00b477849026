"""What ``imagenet_train.py`` keeps of a run, on rank 0: checkpoints (timm's ``CheckpointSaver``),
``args.yaml``, TensorBoard scalars, ``metrics.json`` and ``summary.csv``, in timm's layout; and which
validation (the EMA weights' or the raw weights') picks ``model_best`` and steps the schedule."""
import argparse
import csv
import json
import logging
import os
from typing import List

import yaml
from timm.utils import CheckpointSaver

from threedtrl.runtime import OutputLayout, atomic_write

_logger = logging.getLogger("train")


def output_layout(out_dir: str) -> OutputLayout:
    """timm's layout: checkpoints, TensorBoard scalars and ``metrics.json`` all in the experiment folder."""
    return OutputLayout(out_dir, checkpoints="", tensorboard="", results="metrics.json")


def validates_ema(args: argparse.Namespace) -> bool:
    """The EMA weights are validated every epoch unless kept on the CPU (as in timm)."""
    return args.model_ema and not args.model_ema_force_cpu


def selected_metric(args: argparse.Namespace) -> str:
    """The validation metric that steps the schedule and picks ``model_best``: the EMA weights' when
    they are validated (the release's timm 0.6 behaviour), unless ``--no-model-ema-eval``."""
    return f"ema_{args.eval_metric}" if validates_ema(args) and args.model_ema_eval else args.eval_metric


def load_history(layout: OutputLayout, start_epoch: int) -> List[dict]:
    """Rows of ``metrics.json`` for epochs before ``start_epoch`` (kept when resuming)."""
    path = layout.results_path
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [row for row in json.load(f).get("epochs", []) if row["epoch"] < start_epoch]


def write_records(layout: OutputLayout, history: List[dict], summary: dict) -> None:
    """``metrics.json`` and ``summary.csv``, both replaced atomically."""
    layout.write_results(dict(summary, epochs=history))
    fields = list(dict.fromkeys(key for row in history for key in row))

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(history)
    atomic_write(os.path.join(layout.root, "summary.csv"), write_csv)


def write_args(out_dir: str, args: argparse.Namespace) -> None:
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()}

    def write_yaml(tmp: str) -> None:
        with open(tmp, "w") as f:
            yaml.safe_dump(values, f, sort_keys=True)
    atomic_write(os.path.join(out_dir, "args.yaml"), write_yaml)


class RunRecords:
    """What rank 0 keeps of a run: checkpoints (timm's ``CheckpointSaver``), ``args.yaml``,
    TensorBoard scalars, ``metrics.json`` and ``summary.csv`` (earlier epochs kept on resume)."""

    def __init__(self, args: argparse.Namespace, out_dir: str, model, optimizer, model_ema, loss_scaler,
                 start_epoch: int):
        self.args = args
        self.layout = output_layout(out_dir).prepare()
        self.saver = CheckpointSaver(model, optimizer, args=args, model_ema=model_ema, amp_scaler=loss_scaler,
                                     checkpoint_dir=self.layout.checkpoint_dir, recovery_dir=self.layout.checkpoint_dir,
                                     max_history=args.checkpoint_hist, decreasing=args.eval_metric == "loss")
        if args.resume and os.path.dirname(os.path.abspath(args.resume)) == os.path.abspath(out_dir):
            self.saver.load_state_dict_from_checkpoint(args.resume)
        write_args(out_dir, args)
        self.writer = self.layout.tensorboard_writer()
        self.history = load_history(self.layout, start_epoch)

    def add_epoch(self, epoch: int, lr: float, train_metrics: dict, eval_metrics: dict, selected: float) -> None:
        args = self.args
        row = {"epoch": epoch, "lr": lr, **{f"train_{k}": v for k, v in train_metrics.items()},
               **{f"eval_{k}": v for k, v in eval_metrics.items()}}
        self.history.append(row)
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key.replace("_", "/", 1), value, epoch)
        self.writer.flush()
        best_metric, best_epoch = self.saver.save_checkpoint(epoch, metric=selected)
        write_records(self.layout, self.history, {
            "model": args.model, "best_epoch": best_epoch, f"best_{args.eval_metric}": best_metric,
            "best_by": selected_metric(args), "num_classes": args.num_classes})
        _logger.info("epoch %d: train loss %.4f (%.1f img/s)  val loss %.4f top1 %.2f top5 %.2f%s", epoch,
                     train_metrics["loss"], train_metrics["img_per_s"], eval_metrics["loss"],
                     eval_metrics["top1"], eval_metrics["top5"],
                     f"  ema top1 {eval_metrics['ema_top1']:.2f}" if validates_ema(args) else "")

    def close(self) -> None:
        self.writer.close()
        _logger.info("best %s %.2f at epoch %s; checkpoints in %s", selected_metric(self.args),
                     self.saver.best_metric, self.saver.best_epoch, self.layout.root)
