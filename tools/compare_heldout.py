"""Alignment on scene families no start point saw: 3DTRL vs the same ViT without it, each from its own
start point, and both from scratch, on every held-out family (``make heldout``).

For each family root it runs ``tools/compare_alignment.py`` twice, in ``OUT/<family>/finetuned``
(the recipe from each model's ``--init``) and ``OUT/<family>/scratch`` (``--scratch_args``, no
start point), reusing finished runs, then writes ``OUT/table.json`` and ``OUT/table.md``: per
family and model, the unseen-view test metrics of the start point alone (before training), after
fine-tuning and from scratch (mean and standard deviation over seeds), the paired t-test of 3DTRL
against the ViT per family and over every (family, seed) pair, and the seconds each run took.

    python tools/compare_heldout.py --roots data/heldout/kuka data/heldout/rolling ... \\
        --init vit_3dtrl=weights/transfer_vit_3dtrl.safetensors --init deit_tcn=weights/transfer_deit_tcn.safetensors
"""
import argparse
import os
import time
from typing import Dict, Optional, Sequence

import threedtrl.runtime.compat  # noqa: F401  (the torchvision remedy, before the first timm/torchvision import)
from threedtrl.runtime import UserError, run_cli
from threedtrl.tools.compare_alignment import METRICS, model_name, run_comparison, write_comparison_table
from threedtrl.tools.seed_stats import format_p, paired, summarise

MODELS = ("deit_tcn", "vit_3dtrl")
# the recipe `make demo FTPV_ROOT=DIR` runs (Makefile: DEMO_COMMON and TRANSFER_RECIPE), here without its
# --init; the from-scratch runs take the same recipe
TRANSFER_RECIPE = ("--img_size 64 --loss npairs --depth 4 --trl_depth 1 --global_pool avg --views_per_clip 0 "
                   "--clip_frames 10 --batch_size 2 --triplets_per_epoch 32 --epochs 20 --patience 20 --lr 1e-3 "
                   "--center_in_time")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--roots", nargs="+", required=True, help="FTPV roots of the held-out families (make heldout)")
    p.add_argument("--out", default="output/compare_heldout")
    p.add_argument("--init", action="append", default=[], metavar="MODEL=FILE", required=True,
                   help="each model's start point (compare_alignment.py --init); give both")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--scratch_seeds", nargs="*", type=int, default=[0],
                   help="seeds of the from-scratch runs (none: skip them)")
    p.add_argument("--train_args", default=TRANSFER_RECIPE, help="the fine-tuning recipe")
    p.add_argument("--scratch_args", default=TRANSFER_RECIPE, help="the from-scratch recipe (same budget)")
    p.add_argument("--unseen_train_views", type=int, default=6, help="training cameras (the first K)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    return p


def compare(args: argparse.Namespace, root: str, out: str, seeds: Sequence[int], train_args: str,
            inits: Sequence[str]) -> Dict:
    return run_comparison(root, out, MODELS, seeds, train_args, inits, args.jobs, args.threads, args.device,
                          args.unseen_train_views)


def unseen(table: Dict) -> Dict:
    return table["table"]["unseen"]["test"]


def family_rows(finetuned: Dict, scratch: Optional[Dict]) -> Dict:
    rows = {}
    for model in MODELS:
        name = model_name(model)
        row = unseen(finetuned)[name]
        rows[model] = {"start": row["initial"], "finetuned": {m: row[m] for m, _ in METRICS},
                       "seconds": row["seconds"], "paired": row.get("paired")}
        if scratch is not None:
            s = unseen(scratch)[name]
            rows[model]["scratch"] = {m: s[m] for m, _ in METRICS}
    return rows


def pooled(families: Dict) -> Dict:
    """Paired t-test of 3DTRL against the ViT over every (family, seed) pair, per metric."""
    out = {}
    for m, _ in METRICS:
        base = [v for f in families.values() for v in f["deit_tcn"]["finetuned"][m]["values"]]
        trl = [v for f in families.values() for v in f["vit_3dtrl"]["finetuned"][m]["values"]]
        out[m] = {**paired(base, trl), "deit_tcn": summarise(base), "vit_3dtrl": summarise(trl)}
    return out


def markdown(families: Dict, pool: Dict, seeds: Sequence[int], scratch_seeds: Sequence[int]) -> str:
    lines = [f"Unseen cameras of the test split; fine-tuned: mean ± standard deviation over seeds "
             f"{', '.join(map(str, seeds))}; scratch: seeds {', '.join(map(str, scratch_seeds)) or 'none'}; "
             f"p: two-sided paired t-test of 3DTRL against the ViT.", "",
             "| family | model | AE start | AE fine-tuned | AE scratch | tau start | tau fine-tuned | tau scratch "
             "| p (AE, tau) | seconds per run |", "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(entry: Optional[Dict], metric: str) -> str:
        return f"{entry[metric]['mean']:.3f} ± {entry[metric]['std']:.3f}" if entry else "-"
    for family, rows in families.items():
        for model in MODELS:
            r = rows[model]
            p = ", ".join(format_p(r["paired"][m]["p_value"]) for m in ("alignment_error", "kendalls_tau")) \
                if r["paired"] else ""
            lines.append(f"| {family} | {model} | {cell(r['start'], 'alignment_error')} | "
                         f"{cell(r['finetuned'], 'alignment_error')} | {cell(r.get('scratch'), 'alignment_error')} | "
                         f"{cell(r['start'], 'kendalls_tau')} | {cell(r['finetuned'], 'kendalls_tau')} | "
                         f"{cell(r.get('scratch'), 'kendalls_tau')} | {p} | {sum(r['seconds']) / len(r['seconds']):.0f} |")
    lines += ["", "All families, every (family, seed) pair: "
              + "; ".join(f"{label} ViT {pool[m]['deit_tcn']['mean']:.3f}, 3DTRL {pool[m]['vit_3dtrl']['mean']:.3f} "
                          f"(p {format_p(pool[m]['p_value'])})" for m, label in METRICS)]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    names = [os.path.basename(os.path.normpath(root)) for root in args.roots]
    if len(set(names)) != len(names):
        raise UserError(f"--roots must end in distinct folder names (the families' names), got {names}")
    started = time.time()
    families: Dict[str, Dict] = {}
    for name, root in zip(names, args.roots):
        finetuned = compare(args, root, os.path.join(args.out, name, "finetuned"), args.seeds, args.train_args,
                            args.init)
        scratch = (compare(args, root, os.path.join(args.out, name, "scratch"), args.scratch_seeds,
                           args.scratch_args, []) if args.scratch_seeds else None)
        families[name] = family_rows(finetuned, scratch)
    pool = pooled(families)
    settings = {"roots": args.roots, "inits": args.init, "seeds": args.seeds, "scratch_seeds": args.scratch_seeds,
                "train_args": args.train_args, "scratch_args": args.scratch_args, "device": args.device,
                "wall_seconds": time.time() - started}
    write_comparison_table(args.out, {"settings": settings, "families": families, "pooled": pool},
                           markdown(families, pool, args.seeds, args.scratch_seeds))


if __name__ == "__main__":
    run_cli(main)
