"""Cross-view experiment on the embedded Panda action set: the demo TimeSformer with and without
3DTRL, several seeds; reports top-1 and mean per-class accuracy on the unseen camera.

    python tools/cross_view_experiment.py --data data/panda_actions --out output/cross_view \
        --seeds 0 1 2 --epochs 10

Each run is ``tools/run_net.py`` in its own process (finished runs are skipped, unfinished ones
resume from their last checkpoint; ``--jobs`` runs several at once). ``--init_plain`` and
``--init_3dtrl`` start each model from its own weights (``TIMESFORMER.PRETRAINED_MODEL``). Writes ``summary.json`` and ``summary.md`` in ``--out``: mean and
standard deviation over seeds, and the per-seed 3DTRL - plain differences with a paired t-test.
"""
import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from threedtrl.runtime import UserError, run_cli, write_json_atomic, write_text_atomic
from threedtrl.tools.seed_stats import paired, summarise as summarise_seeds

VARIANTS = {"TimeSformer": "TimeSformer_demo_cpu.yaml", "TimeSformer + 3DTRL": "TimeSformer_3DTRL_demo_cpu.yaml"}
INIT_FLAGS = {"TimeSformer": "init_plain", "TimeSformer + 3DTRL": "init_3dtrl"}  # variant -> its weights' flag
METRICS = ("top1", "mean_class_acc")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="rendered data set (tools/render_actions.py)")
    parser.add_argument("--out", required=True, help="output folder, one sub-folder per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10, help="SOLVER.MAX_EPOCH of every run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--init_plain", default="", metavar="FILE", help="start weights of the runs without 3DTRL")
    parser.add_argument("--init_3dtrl", default="", metavar="FILE", help="start weights of the runs with 3DTRL")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every run")
    return parser.parse_args(argv)


def run_one(name: str, seed: int, args) -> dict:
    """The test metrics of variant ``name`` with ``seed`` (trained first unless its run finished)."""
    config = VARIANTS[name]
    out = os.path.join(args.out, f"{os.path.splitext(config)[0]}_seed{seed}")
    results = os.path.join(out, "results.json")
    init = getattr(args, INIT_FLAGS[name])
    if not os.path.isfile(results):
        cmd = [sys.executable, os.path.join(ROOT, "tools", "run_net.py"), "--cfg", os.path.join(ROOT, "configs", config),
               "DATA.PATH_TO_DATA_DIR", args.data, "OUTPUT_DIR", out, "RNG_SEED", str(seed),
               "SOLVER.MAX_EPOCH", str(args.epochs), "LOG.PROGRESS", str(not args.no_progress),
               *(["TIMESFORMER.PRETRAINED_MODEL", init] if init else []), *args.opts]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        if subprocess.run(cmd, env=env).returncode != 0:
            raise UserError(f"run {config} seed {seed} failed (its message is above)")
    with open(results) as f:
        return json.load(f)["test"]


def paired_difference(table: dict, metric: str) -> dict:
    """3DTRL minus plain on the seeds both finished (see :func:`tools.seed_stats.paired`)."""
    plain, trl = (table[name] for name in VARIANTS)
    seeds = sorted(set(plain) & set(trl))
    return dict(paired([plain[s][metric] for s in seeds], [trl[s][metric] for s in seeds]), seeds=seeds)


def summarise(table: dict) -> str:
    lines = ["| model | cross-view top-1 (%) | cross-view mean per-class acc. (%) | seeds |", "|---|---|---|---|"]
    for name, runs in table.items():
        stats = [summarise_seeds([r[metric] for r in runs.values()]) for metric in METRICS]
        cells = [f"{s['mean']:.1f} ± {s['std']:.1f}" for s in stats]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {len(runs)} |")
    if all(table.get(name) for name in VARIANTS):
        for metric in METRICS:
            diff = paired_difference(table, metric)
            if len(diff["seeds"]) > 1:
                lines.append(f"\n3DTRL - plain, {metric}: {diff['mean_difference']:+.1f} ± {diff['std_difference']:.1f} "
                             f"over seeds {diff['seeds']} (paired t-test p = {diff['p_value']:.3g})")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    if not os.path.isfile(os.path.join(args.data, "test.csv")):
        raise UserError(f"no test.csv in {args.data}; render the data set with tools/render_actions.py first")
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    args.inits = {name: getattr(args, flag) for name, flag in INIT_FLAGS.items() if getattr(args, flag)}  # as given
    for name, path in args.inits.items():
        if not os.path.isfile(path):
            raise UserError(f"--{INIT_FLAGS[name]}: no file {path}")
        setattr(args, INIT_FLAGS[name], os.path.abspath(path))
    args.data, args.out = os.path.abspath(args.data), os.path.abspath(args.out)
    table = {name: {} for name in VARIANTS}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = {pool.submit(run_one, name, seed, args): (name, seed) for seed in args.seeds for name in VARIANTS}
        for done in as_completed(runs):
            name, seed = runs[done]
            table[name][seed] = done.result()
            print(f"{name} seed {seed}: " + ", ".join(f"{m} {table[name][seed][m]:.1f}" for m in METRICS), flush=True)
            write_summary(table, args)


def write_summary(table: dict, args) -> None:
    """``summary.json`` and ``summary.md`` of the runs finished so far."""
    differences = {m: paired_difference(table, m) for m in METRICS} if all(table.get(n) for n in VARIANTS) else None
    runs = {name: dict(sorted(seeds.items())) for name, seeds in table.items()}
    write_json_atomic({"epochs": args.epochs, "seeds": args.seeds, "options": args.opts, "inits": args.inits, "runs": runs,
                       "paired": differences}, os.path.join(args.out, "summary.json"))
    markdown = summarise({name: runs for name, runs in table.items() if runs})
    write_text_atomic(markdown, os.path.join(args.out, "summary.md"))
    print(markdown, flush=True)


if __name__ == "__main__":
    run_cli(main)
