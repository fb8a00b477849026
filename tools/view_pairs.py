"""Which cameras an alignment model fails on: every view pair of the test split, grouped by camera kind.

The unseen-view metric of ``multiview_video_alignment.py`` is a mean over the pairs of the
first-person view and the unseen cameras, so one camera at chance hides among good ones. This tool
evaluates each checkpoint on every view of the test trajectories (``multiview_video_alignment.py
--test CKPT --train_views -1``, in this process, in a temporary folder), then groups the pairs by
what their two views are: the first-person view (``fpv``), the cameras trained on (``view_0 ..
view_{K-1}``, K = ``--train_views``) and the unseen ones (``view_K ..``). It prints and writes
(``OUT/view_pairs.json``, ``OUT/view_pairs.md``) each group's alignment error and Kendall's tau, and
each view's error over its pairs: mean and standard deviation over the checkpoints (e.g. the seeds of
one recipe). A checkpoint is compared as it was trained to compare (its ``model_cfg``); a start point
file records no recipe, so to see it as a recipe would, evaluate the ``best.pth`` of an ``--epochs 0``
run of that recipe.

    python tools/view_pairs.py --data_root data/heldout/rolling --train_views 6 --out output/view_pairs/rolling \\
        RUN_DIR/seed0/best.pth RUN_DIR/seed1/best.pth ...
"""
import argparse
import contextlib
import io
import os
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import threedtrl.runtime.compat  # noqa: F401  (the torchvision remedy, before the first timm/torchvision import)
import multiview_video_alignment
from data_pipeline import FPV
from threedtrl.alignment.evaluation import per_view_means
from threedtrl.runtime import UserError, read_json, run_cli, write_json_atomic, write_text_atomic
from threedtrl.tools.seed_stats import summarise

# pairs by the kinds of their two views; "unseen-view metric": the pairs of the fpv and the unseen cameras,
# whose mean is multiview_video_alignment.py's test metric in the unseen setting
GROUPS = ("fpv-training", "fpv-unseen", "training-training", "training-unseen", "unseen-unseen", "unseen-view metric")
MEASURES = ("alignment_error", "kendalls_tau")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", nargs="+",
                   help="alignment checkpoints: best.pth of runs, or a start point as it is; a start point as a "
                        "recipe compares videos (L2-normalised n-pairs embeddings, --center_in_time) is the "
                        "best.pth of an --epochs 0 run of that recipe")
    p.add_argument("--data_root", required=True, help="FTPV root (the test split's trajectories are read)")
    p.add_argument("--data", default="panda", help="data set name, as multiview_video_alignment.py --data")
    p.add_argument("--train_views", type=int, required=True,
                   help="K of the runs' unseen setting: views 0..K-1 were trained on, the rest are unseen")
    p.add_argument("--out", default="output/view_pairs")
    p.add_argument("--device", default="cpu")
    return p


def camera_kind(view: str, train_views: int) -> str:
    """``fpv``, ``training`` or ``unseen`` for a view name of the results (``fpv``, ``view_<k>``)."""
    if view == FPV:
        return "fpv"
    return "training" if int(view.split("_")[1]) < train_views else "unseen"


def group_name(pair: Sequence[str], train_views: int) -> str:
    order = {"fpv": 0, "training": 1, "unseen": 2}
    kinds = sorted((camera_kind(view, train_views) for view in pair), key=order.get)
    return "-".join(kinds)


def group_means(view_pairs: Sequence[Dict], train_views: int) -> Dict[str, Dict[str, float]]:
    """Per camera-kind group: the mean of each measure over the group's view pairs."""
    groups: Dict[str, List[Dict]] = {}
    for pair in view_pairs:
        name = group_name(pair["views"], train_views)
        groups.setdefault(name, []).append(pair)
        if "training" not in name:
            groups.setdefault("unseen-view metric", []).append(pair)
    return {name: {m: sum(p[m] for p in pairs) / len(pairs) for m in MEASURES} for name, pairs in groups.items()}


def evaluate_checkpoint(args: argparse.Namespace, checkpoint: str) -> List[Dict]:
    """The view pairs of ``checkpoint`` on every view of the test split (its test run's folder is discarded)."""
    with tempfile.TemporaryDirectory(prefix="view_pairs_") as out:
        argv = ["--data", args.data, "--data_root", args.data_root, "--train_views", "-1", "--test", checkpoint,
                "--output_dir", out, "--device", args.device, "--xpar", "--num_workers", "0"]
        with contextlib.redirect_stdout(io.StringIO()):
            multiview_video_alignment.main(argv)
        return read_json(os.path.join(out, "test.json"))["view_pairs"]["test"]


def markdown(table: Dict, count: int) -> str:
    lines = [f"{count} checkpoint(s); mean ± standard deviation over them. "
             "AE: alignment error ↓; tau: Kendall's tau ↑.", "", "| pairs | AE | tau |", "|---|---|---|"]
    for name in GROUPS:
        if name in table["groups"]:
            stats = table["groups"][name]
            cells = [f"{stats[m]['mean']:.3f} ± {stats[m]['std']:.3f}" for m in MEASURES]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += ["", "| view | AE over its pairs |", "|---|---|"]
    lines += [f"| {view} | {s['mean']:.3f} ± {s['std']:.3f} |" for view, s in table["views"].items()]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    if args.train_views < 1:
        raise UserError(f"--train_views must be at least 1 (the runs' unseen setting), got {args.train_views}")
    for checkpoint in args.checkpoints:
        if not os.path.isfile(checkpoint):
            raise UserError(f"no checkpoint file {checkpoint}")
    started = time.time()
    per_checkpoint = []
    for checkpoint in args.checkpoints:
        view_pairs = evaluate_checkpoint(args, checkpoint)
        per_checkpoint.append({"groups": group_means(view_pairs, args.train_views),
                               "views": per_view_means(view_pairs)})
        print(f"{checkpoint}: evaluated ({time.time() - started:.0f} s)", flush=True)
    names = [g for g in GROUPS if all(g in c["groups"] for c in per_checkpoint)]
    views = list(per_checkpoint[0]["views"])
    table = {"groups": {g: {m: summarise([c["groups"][g][m] for c in per_checkpoint]) for m in MEASURES}
                        for g in names},
             "views": {v: summarise([c["views"][v] for c in per_checkpoint]) for v in views},
             "checkpoints": args.checkpoints,
             "settings": {"data_root": args.data_root, "data": args.data, "train_views": args.train_views,
                          "wall_seconds": time.time() - started}}
    text = markdown(table, len(per_checkpoint))
    write_json_atomic(table, os.path.join(args.out, "view_pairs.json"))
    write_text_atomic(text, os.path.join(args.out, "view_pairs.md"))
    print(text)
    print(f"wrote {os.path.join(args.out, 'view_pairs.md')} and view_pairs.json")


if __name__ == "__main__":
    run_cli(main)
