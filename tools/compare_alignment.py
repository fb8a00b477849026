"""3DTRL vs the same ViT without 3DTRL (the paper's DeiT+TCN baseline) on multi-view video alignment.

Trains both models with one recipe for several seeds with ``multiview_video_alignment.py`` and
writes a table of test metrics (mean and standard deviation over seeds, and a paired t-test of
the per-seed differences) as Markdown and JSON. In the unseen setting every run is tested on the
training cameras ("seen views") and on the held-out cameras ("unseen views"). Finished runs (with
a results.json) are reused, so an interrupted comparison continues where it stopped; the
comparison's settings are kept in ``OUT/comparison.json`` and a rerun with other settings is
refused. ``--init MODEL=FILE`` starts one model from its own weights (e.g. each model's
``tools/pretrain_state.py`` output); ``--jobs`` runs several trainings at once.

    python tools/compare_alignment.py --data_root data/ftpv --out output/compare_alignment \\
        --train_args "--loss npairs --depth 4 --trl_depth 1 --global_pool avg ..."
"""
import argparse
import contextlib
import io
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import threedtrl.runtime.compat  # noqa: F401  (the torchvision remedy, before the first timm/torchvision import)
from threedtrl.alignment.embedder import MODEL_ALIASES
from threedtrl.runtime import UserError, read_json, run_cli, write_json_atomic, write_text_atomic
from threedtrl.tools.seed_stats import format_p, paired, summarise

METRICS = (("alignment_error", "alignment error ↓"), ("cycle_error", "cycle error ↓"),
           ("kendalls_tau", "Kendall's tau ↑"), ("kendalls_tau_b", "tau-b ↑"))
DEMO_RECIPE = ("--img_size 64 --loss npairs --depth 4 --trl_depth 1 --global_pool avg --views_per_clip 0 "
               "--clip_frames 10 --batch_size 2 --triplets_per_epoch 32 --lr 1e-3 --epochs 30 --patience 30")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="panda")
    p.add_argument("--data_root", default="data/ftpv")
    p.add_argument("--out", default="output/compare_alignment")
    p.add_argument("--models", nargs="+", default=["vit_plain_tiny_patch16_224", "vit_3dtrl_tiny_patch16_224"],
                   help="baseline first")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--settings", nargs="+", default=["unseen"], choices=("seen", "unseen"),
                   help="seen: train and test on every view; unseen: train on views 0..k-1, test on the rest")
    p.add_argument("--unseen_train_views", type=int, default=6, help="--train_views of the unseen setting")
    p.add_argument("--train_args", default=DEMO_RECIPE, help="the recipe: flags of multiview_video_alignment.py")
    p.add_argument("--init", action="append", default=[], metavar="MODEL=FILE",
                   help="start MODEL (name or short name) from FILE (multiview_video_alignment.py --init); "
                        "repeat for each model")
    p.add_argument("--device", default="cpu", help="device of every training run (cpu, cuda, cuda:N)")
    p.add_argument("--jobs", type=int, default=1, help="training runs at a time")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per training run (one wastes least on a busy machine)")
    p.add_argument("--xpar", action="store_true", help="no progress bars")
    return p


def model_name(name: str) -> str:
    return MODEL_ALIASES.get(name, name)


def parse_inits(items: Sequence[str], models: Sequence[str]) -> Dict[str, str]:
    """``["MODEL=FILE", ...]`` -> {timm name: file}; every MODEL must be one of ``models``."""
    inits = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--init takes MODEL=FILE, got {item!r}")
        if model_name(name) not in models:
            raise UserError(f"--init names {name}, which is not one of --models ({', '.join(models)})")
        if not os.path.isfile(path):
            raise UserError(f"--init file {path} is missing")
        inits[model_name(name)] = path
    return inits


def claim_comparison(args: argparse.Namespace, record: Dict) -> None:
    """Write ``OUT/comparison.json``, or check that an earlier run of this folder used the same settings."""
    path = os.path.join(args.out, "comparison.json")
    if os.path.isfile(path):
        earlier = read_json(path)
        changed = sorted(k for k in record if k != "seeds" and earlier.get(k) != record[k])
        if changed:
            raise UserError(f"{args.out} holds a comparison with other settings ({', '.join(changed)}): "
                            "choose another --out")
    write_json_atomic(record, path)


def run_dir(args: argparse.Namespace, setting: str, model: str, seed: int) -> str:
    return os.path.join(args.out, "runs", f"{setting}_{model}_seed{seed}")


def train_run(args: argparse.Namespace, setting: str, model: str, seed: int) -> Dict:
    out = run_dir(args, setting, model, seed)
    results = os.path.join(out, "results.json")
    if not os.path.isfile(results):
        train_views = -1 if setting == "seen" else args.unseen_train_views
        cmd = [sys.executable, os.path.join(ROOT, "multiview_video_alignment.py"), "--data", args.data,
               "--data_root", args.data_root, "--train_views", str(train_views), "--model", model,
               "--seed", str(seed), "--num_workers", "0", "--output_dir", out, "--device", args.device,
               *shlex.split(args.train_args)]
        if model in args.inits:
            cmd += ["--init", args.inits[model]]
        if os.path.isfile(os.path.join(out, "last.pth")):
            cmd.append("--resume")
        if args.xpar or args.jobs > 1:
            cmd.append("--xpar")
        print(f"== {setting} {model} seed {seed}", flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        started = time.time()
        log_path = out + ".log" if args.jobs > 1 else None     # parallel runs write their output beside the run
        with open(log_path, "a") if log_path else contextlib.nullcontext() as log:
            code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT if log else None).returncode
        if code != 0:
            raise UserError(f"training failed{f' (output in {log_path})' if log_path else ''}: {' '.join(cmd)}")
        print(f"== {setting} {model} seed {seed} done in {time.time() - started:.0f} s", flush=True)
    return read_json(results)


def train_all(args: argparse.Namespace, setting: str) -> Dict[str, List[Dict]]:
    """Every model's run for every seed, ``--jobs`` at a time: {model: [results per seed]}."""
    jobs = [(model, seed) for seed in args.seeds for model in args.models]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = list(pool.map(lambda job: train_run(args, setting, *job), jobs))
    runs: Dict[str, List[Dict]] = {model: [] for model in args.models}
    for (model, _), result in zip(jobs, done):
        runs[model].append(result)
    return runs


def view_sets(setting: str) -> List[str]:
    return ["test_seen_views", "test"] if setting == "unseen" else ["test"]


def markdown_table(table: Dict, models: List[str], seeds: List[int]) -> str:
    lines = [f"Test split, mean ± standard deviation over seeds {', '.join(map(str, seeds))}; p: two-sided "
             f"paired t-test of the per-seed differences to {models[0]}.", "",
             "| setting | views | model | " + " | ".join(label for _, label in METRICS) + " | before training (AE) |",
             "|---|---|---|" + "---|" * (len(METRICS) + 1)]
    for setting, per_views in table.items():
        for views, per_model in per_views.items():
            for model in models:
                row = per_model[model]
                cells = []
                for m, _ in METRICS:
                    cell = f"{row[m]['mean']:.3f} ± {row[m]['std']:.3f}"
                    if "paired" in row:
                        cell += f" (p {format_p(row['paired'][m]['p_value'])})"
                    cells.append(cell)
                label = "seen" if views == "test_seen_views" or setting == "seen" else "unseen"
                lines.append(f"| {setting} | {label} | {model} | " + " | ".join(cells)
                             + f" | {row['initial']['alignment_error']['mean']:.3f} |")
    return "\n".join(lines) + "\n"


def run_comparison(root: str, out: str, models: Sequence[str], seeds: Sequence[int], train_args: str,
                   inits: Sequence[str], jobs: int, threads: int, device: str, unseen_train_views: int) -> Dict:
    """This comparison (the unseen setting) on FTPV root ``root``, in this process (the training runs are
    subprocesses either way) with its table kept from the caller's output; returns its ``OUT/table.json``."""
    argv = ["--data_root", root, "--out", out, "--models", *models, "--seeds", *map(str, seeds), "--train_args",
            train_args, "--jobs", str(jobs), "--threads", str(threads), "--device", device, "--unseen_train_views",
            str(unseen_train_views), "--xpar"]
    for item in inits:
        argv += ["--init", item]
    started = time.time()
    with contextlib.redirect_stdout(io.StringIO()):
        main(argv)
    print(f"{out}: {time.time() - started:.0f} s", flush=True)
    return read_json(os.path.join(out, "table.json"))


def write_comparison_table(out: str, table: Dict, text: str) -> None:
    """A comparison's outcome: ``OUT/table.json`` (``table``, with its settings) and ``OUT/table.md``
    (``text``, also printed)."""
    write_json_atomic(table, os.path.join(out, "table.json"))
    write_text_atomic(text, os.path.join(out, "table.md"))
    print(text)
    print(f"wrote {os.path.join(out, 'table.md')} and table.json")


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    args.models = [model_name(m) for m in args.models]
    args.inits = parse_inits(args.init, args.models)
    if args.jobs < 1:
        raise UserError(f"--jobs must be positive, got {args.jobs}")
    settings = {"data": args.data, "data_root": os.path.normpath(args.data_root), "train_args": args.train_args,
                "models": args.models, "inits": {m: os.path.normpath(f) for m, f in args.inits.items()},
                "device": args.device, "seeds": args.seeds, "unseen_train_views": args.unseen_train_views}
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    claim_comparison(args, settings)
    started = time.time()
    table: Dict[str, Dict] = {}
    for setting in args.settings:
        runs = train_all(args, setting)
        table[setting] = {}
        for views in view_sets(setting):
            table[setting][views] = {}
            for model in args.models:
                row = {m: summarise([r[views][m] for r in runs[model]]) for m, _ in METRICS}
                row["initial"] = {m: summarise([r["initial"][views][m] for r in runs[model]]) for m, _ in METRICS}
                row["best_epochs"] = [r["best_epoch"] for r in runs[model]]
                row["seconds"] = [sum(e.get("seconds", 0.0) for e in r["epochs"]) for r in runs[model]]
                if model != args.models[0]:
                    row["paired"] = {m: paired(table[setting][views][args.models[0]][m]["values"], row[m]["values"])
                                     for m, _ in METRICS}
                table[setting][views][model] = row
    settings["wall_seconds"] = time.time() - started
    write_comparison_table(args.out, {"settings": settings, "table": table},
                           markdown_table(table, args.models, args.seeds))


if __name__ == "__main__":
    run_cli(main)
