"""3DTRL vs the same ViT without 3DTRL (the paper's DeiT+TCN baseline) on multi-view video alignment.

Trains both models in the seen and the unseen setting for several seeds with
``multiview_video_alignment.py`` and writes a table of test metrics (mean and standard deviation
over seeds) as Markdown and JSON. Finished runs (with a results.json) are reused, so an
interrupted comparison continues where it stopped.

    python tools/compare_alignment.py --data_root data/ftpv_panda --out output/compare_alignment
"""
import argparse
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils import UserError, run_cli, write_json_atomic  # noqa: E402

METRICS = (("alignment_error", "alignment error ↓"), ("cycle_error", "cycle error ↓"),
           ("kendalls_tau", "Kendall's tau ↑"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default="panda")
    p.add_argument("--data_root", default="data/ftpv_panda")
    p.add_argument("--out", default="output/compare_alignment")
    p.add_argument("--models", nargs="+", default=["vit_plain_tiny_patch16_224", "vit_3dtrl_tiny_patch16_224"],
                   help="baseline first")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--settings", nargs="+", default=["seen", "unseen"], choices=("seen", "unseen"),
                   help="settings to run and tabulate (separate invocations can share the work)")
    p.add_argument("--unseen_train_views", type=int, default=6, help="--train_views of the unseen setting")
    p.add_argument("--img_size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--triplets_per_epoch", type=int, default=96)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--num_workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per training run (one wastes least on a busy machine)")
    p.add_argument("--xpar", action="store_true", help="no progress bars")
    return p


def run_dir(args: argparse.Namespace, setting: str, model: str, seed: int) -> str:
    return os.path.join(args.out, "runs", f"{setting}_{model}_seed{seed}")


def train_run(args: argparse.Namespace, setting: str, model: str, seed: int) -> Dict:
    out = run_dir(args, setting, model, seed)
    results = os.path.join(out, "results.json")
    if not os.path.isfile(results):
        train_views = -1 if setting == "seen" else args.unseen_train_views
        cmd = [sys.executable, os.path.join(ROOT, "multiview_video_alignment.py"), "--data", args.data,
               "--data_root", args.data_root, "--train_views", str(train_views), "--model", model,
               "--seed", str(seed), "--img_size", str(args.img_size), "--epochs", str(args.epochs),
               "--patience", str(args.patience), "--triplets_per_epoch", str(args.triplets_per_epoch),
               "--batch_size", str(args.batch_size), "--lr", str(args.lr), "--num_workers", str(args.num_workers),
               "--output_dir", out, "--device", "cpu"]
        if os.path.isfile(os.path.join(out, "last.pth")):
            cmd.append("--resume")
        if args.xpar:
            cmd.append("--xpar")
        print(f"== {setting} {model} seed {seed}", flush=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        if subprocess.run(cmd, env=env).returncode != 0:
            raise UserError(f"training failed: {' '.join(cmd)}")
    with open(results) as f:
        return json.load(f)


def summarise(values: Sequence[float]) -> Dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max()), "values": [float(v) for v in arr]}


def markdown_table(table: Dict, models: List[str], seeds: List[int]) -> str:
    lines = [f"Test split, mean ± standard deviation over seeds {', '.join(map(str, seeds))}.", "",
             "| setting | model | " + " | ".join(label for _, label in METRICS) + " | best epoch |",
             "|---|---|" + "---|" * (len(METRICS) + 1)]
    for setting, per_model in table.items():
        for model in models:
            row = per_model[model]
            cells = [f"{row[m]['mean']:.3f} ± {row[m]['std']:.3f}" for m, _ in METRICS]
            lines.append(f"| {setting} | {model} | " + " | ".join(cells) + f" | {row['best_epochs']} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    table: Dict[str, Dict] = {}
    for setting in args.settings:
        table[setting] = {}
        for model in args.models:
            runs = [train_run(args, setting, model, seed) for seed in args.seeds]
            row = {m: summarise([r["test"][m] for r in runs]) for m, _ in METRICS}
            row["initial"] = {m: summarise([r["initial"]["test"][m] for r in runs]) for m, _ in METRICS}
            row["best_epochs"] = [r["best_epoch"] for r in runs]
            table[setting][model] = row
    settings = {"data": args.data, "img_size": args.img_size, "epochs": args.epochs,
                "triplets_per_epoch": args.triplets_per_epoch, "batch_size": args.batch_size, "lr": args.lr,
                "unseen_train_views": args.unseen_train_views, "seeds": args.seeds}
    write_json_atomic({"settings": settings, "table": table}, os.path.join(args.out, "table.json"))
    text = markdown_table(table, args.models, args.seeds)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {os.path.join(args.out, 'table.md')} and table.json")


if __name__ == "__main__":
    run_cli(main)
