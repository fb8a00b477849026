"""Does right geometry make 3DTRL more viewpoint-agnostic? The release's layer against each geometric
objective of ``multiview_video_alignment.py --geometry_loss`` on an FTPV root with ground truth (the demo
data by default, or a held-out family of ``make heldout`` with its start point and recipe).

For each option ``NAME=FLAGS`` (FLAGS added to the embedded demo's recipe) it runs
``tools/compare_alignment.py`` for 3DTRL from ``--init`` in ``OUT/<name>``, then
``visualize.py --geometry_eval`` on every run's ``best.pth`` over the cameras the run never trained
on (``--train_views``), reusing finished runs and evaluations. ``OUT/table.json`` and
``OUT/table.md`` hold, per option, the unseen-view alignment and the geometry against the
renderer's truth (mean and standard deviation over seeds), the paired t-test of every option
against the first, and the seconds each run took. ``--option_init NAME=FILE`` gives an option a start
point of its own (e.g. one pretrained with the same objective by ``tools/pretrain_state.py``); every
start point's own measures on the same cameras are in the table too (``start``).

    python tools/compare_geometry.py --data_root data/ftpv_demo --init weights/align_vit_3dtrl.pth \\
        --option release= --option "oracle=--geometry_loss oracle" --seeds 0 1 2 3 4
"""
import argparse
import contextlib
import io
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import threedtrl.runtime.compat  # noqa: F401  (the torchvision remedy, before the first timm/torchvision import)
import torch

from threedtrl.runtime import UserError, read_json, run_cli
from threedtrl.tools.compare_alignment import run_comparison, write_comparison_table
from threedtrl.tools.seed_stats import format_p, paired, summarise
from threedtrl.visualization import cli as visualize_cli

MODEL = "vit_3dtrl_tiny_patch16_224"
# the embedded demo's recipe (Makefile: DEMO_COMMON and EMBEDDED_RECIPE), here without its --init
DEMO_RECIPE = ("--img_size 64 --loss npairs --depth 4 --trl_depth 1 --global_pool avg --views_per_clip 0 "
               "--clip_frames 10 --batch_size 2 --triplets_per_epoch 32 --epochs 30 --patience 30 --lr 1e-4 "
               "--wise_alpha 0.5")
OPTIONS = ["release=", "consistency=--geometry_loss consistency", "equivariance=--geometry_loss equivariance",
           "oracle=--geometry_loss oracle"]
# (name in the tables, key of test results.json or geometry.json, better direction)
ALIGNMENT = (("alignment error", "alignment_error", "↓"), ("Kendall's tau", "kendalls_tau", "↑"))
GEOMETRY = (("depth Spearman", "depth_spearman", "↑"), ("depth AbsRel (median-scaled)", "depth_absrel_median", "↓"),
            ("relative rotation error (deg)", "relative_rotation_error_deg", "↓"),
            ("rotation accuracy at 30 deg", "rotation_accuracy_at_30_deg", "↑"),
            ("third-person rotation error (deg)", "relative_rotation_error_deg_third_person", "↓"),
            ("rotation AUC at 30 deg", "rotation_auc_30_deg", "↑"),
            ("reprojection error", "reprojection_error", "↓"))
REFERENCES = ("identical_cameras", "best_constant_rotation", "random_rotations", "random_init")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_root", default="data/ftpv_demo", help="an FTPV root with ground truth (make demo)")
    p.add_argument("--out", default="output/compare_geometry")
    p.add_argument("--init", default="weights/align_vit_3dtrl.pth", help="the start point of every run")
    p.add_argument("--option", action="append", default=None, metavar="NAME=FLAGS",
                   help=f"an option: flags added to --train_args; the first is the reference (default: {OPTIONS})")
    p.add_argument("--option_init", action="append", default=[], metavar="NAME=FILE",
                   help="the start point of option NAME (default: --init)")
    p.add_argument("--train_args", default=DEMO_RECIPE, help="the recipe every option shares")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--unseen_train_views", type=int, default=6, help="training cameras (the first K)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    return p


def parse_options(items: Sequence[str]) -> List[Tuple[str, str]]:
    options = []
    for item in items:
        name, sep, flags = item.partition("=")
        if not sep or not name or os.sep in name:
            raise UserError(f"--option takes NAME=FLAGS (a plain name), got {item!r}")
        options.append((name, flags))
    names = [n for n, _ in options]
    if len(set(names)) != len(names):
        raise UserError(f"--option names must differ, got {names}")
    return options


def parse_option_inits(items: Sequence[str], options: Sequence[Tuple[str, str]], default: str) -> Dict[str, str]:
    """The start point of every option: ``--option_init NAME=FILE`` or ``default``."""
    names = [name for name, _ in options]
    inits = dict.fromkeys(names, default)
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or name not in names:
            raise UserError(f"--option_init takes NAME=FILE with NAME one of the options {names}, got {item!r}")
        inits[name] = path
    for path in sorted(set(inits.values())):
        if not os.path.isfile(path):
            raise UserError(f"start point not found: {path}")
    return inits


def evaluate_geometry(checkpoint: str, out: str, args: argparse.Namespace) -> Dict:
    """``visualize.py --geometry_eval`` of ``checkpoint`` (an alignment run's or a pretrained start point)
    on the unseen cameras, into ``out``, in this process on the threads of every job; returns its
    geometry.json."""
    path = os.path.join(out, "geometry.json")
    if not os.path.isfile(path):
        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads * args.jobs)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                visualize_cli.main(["--checkpoint", checkpoint, "--geometry_eval", args.data_root, "--train_views",
                                    str(args.unseen_train_views), "--out", out, "--device", args.device, "--xpar"])
        finally:
            torch.set_num_threads(threads)
    return read_json(path)


def option_row(table: Dict, geometry: List[Dict], start: Dict) -> Dict:
    """Per-seed values, mean and standard deviation of every measure of one option, and the measures of
    its start point before fine-tuning (``start``)."""
    unseen = table["table"]["unseen"]["test"][MODEL]
    # what every evaluation has: the third-person measures need two unseen cameras
    measured = [key for _, key, _ in GEOMETRY if all(key in g for g in [*geometry, start])]
    row = {key: unseen[key] for _, key, _ in ALIGNMENT}
    row.update({key: summarise([g[key]["model"] for g in geometry]) for key in measured})
    row["start"] = {key: unseen["initial"][key]["mean"] for _, key, _ in ALIGNMENT}
    row["start"].update({key: start[key]["model"] for key in measured})
    row["seconds"] = unseen["seconds"]
    return row


def markdown(rows: Dict, references: Dict, seeds: Sequence[int], data_root: str) -> str:
    measures = ALIGNMENT + GEOMETRY
    first = next(iter(rows))
    lines = [f"`{data_root}`, unseen cameras of the test split; mean ± standard deviation over seeds "
             f"{', '.join(map(str, seeds))}; p: two-sided paired t-test against {first}.", "",
             "| option | " + " | ".join(f"{label} {arrow}" for label, _, arrow in measures) + " | seconds per run |",
             "|---|" + "---|" * (len(measures) + 1)]
    for name, row in rows.items():
        cells, start = [], []
        for _, key, _ in measures:
            cell = f"{row[key]['mean']:.3f} ± {row[key]['std']:.3f}" if key in row else "—"
            if key in row.get("paired", {}):
                cell += f" (p {format_p(row['paired'][key]['p_value'])})"
            cells.append(cell)
            start.append(f"{row['start'][key]:.3f}" if key in row["start"] else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {sum(row['seconds']) / len(row['seconds']):.0f} |")
        lines.append(f"| {name}: start point | " + " | ".join(start) + " | |")
    lines += ["", "References on the same cameras: " + "; ".join(
        f"{ref}: rotation error {references['relative_rotation_error_deg'][ref]:.1f} deg, accuracy at 30 deg "
        f"{references['rotation_accuracy_at_30_deg'][ref]:.3f}" for ref in REFERENCES
        if ref in references["relative_rotation_error_deg"])
        + f"; depth Spearman of the randomly initialised layer {references['depth_spearman']['random_init']:.3f}"
        + ("; reprojection error of the true geometry {truth:.4f}, of identical cameras {identical_cameras:.4f}"
           .format(**references["reprojection_error"]) if "reprojection_error" in references else "")]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    options = parse_options(args.option or OPTIONS)
    inits = parse_option_inits(args.option_init, options, args.init)
    started = time.time()
    rows: Dict[str, Dict] = {}
    references: Dict = {}
    for name, flags in options:
        out = os.path.join(args.out, name)
        table = run_comparison(args.data_root, out, [MODEL], args.seeds, f"{args.train_args} {flags}".strip(),
                               [f"vit_3dtrl={inits[name]}"], args.jobs, args.threads, args.device,
                               args.unseen_train_views)
        runs = [os.path.join(out, "runs", f"unseen_{MODEL}_seed{seed}") for seed in args.seeds]
        geometry = [evaluate_geometry(os.path.join(run, "best.pth"), os.path.join(run, "geometry"), args)
                    for run in runs]
        start = evaluate_geometry(inits[name], os.path.join(out, "start_geometry"), args)
        references = references or {key: geometry[0][key] for key in (
            "relative_rotation_error_deg", "rotation_accuracy_at_30_deg", "depth_spearman", "reprojection_error")
            if key in geometry[0]}
        rows[name] = option_row(table, geometry, start)
        if len(rows) > 1:
            base = rows[options[0][0]]
            rows[name]["paired"] = {key: paired(base[key]["values"], rows[name][key]["values"])
                                    for _, key, _ in ALIGNMENT + GEOMETRY if key in base and key in rows[name]}
    settings = {"data_root": args.data_root, "init": args.init, "inits": inits, "options": dict(options), "train_args": args.train_args,
                "seeds": args.seeds, "unseen_train_views": args.unseen_train_views, "device": args.device,
                "wall_seconds": time.time() - started}
    write_comparison_table(args.out, {"settings": settings, "options": rows, "references": references},
                           markdown(rows, references, args.seeds, args.data_root))


if __name__ == "__main__":
    run_cli(main)
