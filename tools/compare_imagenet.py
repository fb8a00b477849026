"""3DTRL ViT-T vs ViT-T on the rendered object ImageFolder: val and viewpoint-perturbed val accuracy.

    python tools/compare_imagenet.py --out output/compare_imagenet

Renders ``--data`` (preset ``small``) if it is missing, then for every model and seed trains with
imagenet_train.py (the release's ``*_nomixup`` recipe, shortened: ``--epochs``, ``--img-size``,
``--patch-size``), evaluates the last checkpoint with imagenet_val.py on the validation split
(viewpoints outside the training range) and on its perspective-perturbed copy, and writes
``results.json`` and ``results.md`` (mean and sample standard deviation over seeds, the per-seed
differences and a paired t-test). ``--cameras`` also compares the camera the 3DTRL layer estimates
for every image with the one it was rendered from (``imagenet_val.py --cameras DATA/cameras.csv``, on
the validation and the training split; ``cameras`` in results.json). Finished runs
are skipped and interrupted ones resume from their ``last.pth.tar``.
"""
import argparse
import json
import os
import subprocess
import sys
from typing import Dict, List

from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from threedtrl.runtime import UserError, run_cli, write_json_atomic
from threedtrl.tools.seed_stats import paired, summarise

PLAIN_LABEL, TRL_LABEL = "ViT-T", "ViT-T + 3DTRL"
MODELS = {  # label -> (timm model, release config)
    PLAIN_LABEL: ("vit_tiny_patch16_224", "vit_1k_nomixup.yaml"),
    TRL_LABEL: ("vit_3dtrl_tiny_patch16_224", "vit_3dtrl_1k_nomixup.yaml"),
}
METRICS = ("val_top1", "perturbed_top1")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/objects_small", help="rendered ImageFolder (made if missing)")
    parser.add_argument("--out", default="output/compare_imagenet")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("-b", "--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("-j", "--workers", type=int, default=1)
    parser.add_argument("--nproc", type=int, default=1, help="training processes per run (i1k.sh when > 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS of every run (1 is fastest on a small, busy CPU)")
    parser.add_argument("--cameras", action="store_true",
                        help="3DTRL runs: the layer's cameras against the rendered ones, on val and train")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def run(command: List[str], log_path: str, threads: int = 1) -> None:
    with open(log_path, "a") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        code = subprocess.call(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if code:
        raise UserError(f"'{' '.join(command[:3])} ...' failed (exit {code}); see {log_path}")


def trained_epochs(run_dir: str) -> int:
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        return len(json.load(f)["epochs"])


def train_command(args, model: str, config: str, seed: int, experiment: str, run_dir: str) -> List[str]:
    flags = [args.data, "-c", os.path.join("i1k_configs", config), "--model", model, "--seed", str(seed),
             "--output", args.out, "--experiment", experiment, "--img-size", str(args.img_size),
             "--model-kwargs", f"patch_size={args.patch_size}", "--epochs", str(args.epochs),
             "--warmup-epochs", str(args.warmup_epochs), "--cooldown-epochs", "0", "-b", str(args.batch_size),
             "--lr", str(args.lr), "--no-model-ema", "--no-amp", "-j", str(args.workers), "--no-progress"]
    last = os.path.join(run_dir, "last.pth.tar")
    if os.path.isfile(last):
        flags += ["--resume", last]
    if args.nproc > 1:
        return ["bash", "i1k.sh", str(args.nproc)] + flags
    return [sys.executable, "imagenet_train.py"] + flags


# evaluation name -> imagenet_val.py flags ({cameras}: the data's cameras.csv)
EVALUATIONS = {"val": [], "val_perturbed": ["--perturbed"], "val_cameras": ["--cameras", "{cameras}"],
               "train_cameras": ["--split", "train", "--cameras", "{cameras}"]}
CAMERA_MEASURES = ("relative_rotation_error_deg", "rotation_accuracy_at_30_deg", "rotation_auc_30_deg")


def evaluate(args, run_dir: str, name: str) -> dict:
    """``imagenet_val.py`` of the run's last checkpoint with the flags of evaluation ``name`` (kept as
    ``RUN/<name>.json``)."""
    path = os.path.join(run_dir, f"{name}.json")
    if not os.path.isfile(path):
        command = [sys.executable, "imagenet_val.py", args.data, "--checkpoint", os.path.join(run_dir, "last.pth.tar"),
                   "-j", str(args.workers), "--no-progress", "--results-file", path]
        flags = [f.format(cameras=os.path.join(args.data, "cameras.csv")) for f in EVALUATIONS[name]]
        run(command + flags, os.path.join(run_dir, "eval.log"), args.threads)
    with open(path) as f:
        return json.load(f)


def camera_summary(runs: List[dict]) -> Dict[str, dict]:
    """Per split and measure: the model's and every reference's mean and spread over seeds."""
    return {split: {measure: {who: summarise([r["cameras"][split][measure][who] for r in runs])
                              for who in runs[0]["cameras"][split][measure]}
                    for measure in CAMERA_MEASURES}
            for split in runs[0]["cameras"]}


def ensure_data(args) -> None:
    if os.path.isfile(os.path.join(args.data, "render.json")):
        with open(os.path.join(args.data, "render.json")) as f:
            if json.load(f).get("complete"):
                return
    os.makedirs(args.out, exist_ok=True)
    run([sys.executable, "tools/render_objects.py", "--out", args.data, "--preset", "small", "--no-progress"],
        os.path.join(args.out, "render.log"))


def summarise_runs(results: Dict[str, List[dict]]) -> Dict[str, dict]:
    """Per model and metric: mean and spread over seeds; for the 3DTRL model also the paired
    differences to the plain one."""
    summary = {label: {key: summarise([r[key] for r in runs]) for key in METRICS} for label, runs in results.items()}
    plain, trl = (results[label] for label in MODELS)
    if plain and len(plain) == len(trl):
        summary[TRL_LABEL]["paired"] = {key: paired([r[key] for r in plain], [r[key] for r in trl]) for key in METRICS}
    return summary


def markdown(summary: Dict[str, dict], args) -> str:
    lines = ["| Model | val top-1 (%) | perturbed val top-1 (%) |", "|---|---|---|"]
    for label, row in summary.items():
        cells = [f"{row[k]['mean']:.1f} ± {row[k]['std']:.1f} ({', '.join(f'{v:.1f}' for v in row[k]['values'])})"
                 for k in METRICS]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    for key, diff in summary[TRL_LABEL].get("paired", {}).items():
        lines.append(f"\n{TRL_LABEL} - {PLAIN_LABEL}, {key}: {diff['mean_difference']:+.1f} ± {diff['std_difference']:.1f} "
                     f"(paired t-test p = {diff['p_value']:.3g})")
    for split, measures in summary[TRL_LABEL].get("cameras", {}).items():
        lines.append(f"\n{TRL_LABEL} cameras, {split} images (pairs of one class): " + "; ".join(
            f"{measure} " + ", ".join(f"{who} {value['mean']:.3f}" for who, value in table.items())
            for measure, table in measures.items()))
    lines.append(f"\nseeds {args.seeds}, mean ± sample std (per seed in brackets); {args.epochs} epochs at "
                 f"{args.img_size} px, patch {args.patch_size}, batch {args.batch_size}, lr {args.lr}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    ensure_data(args)
    results: Dict[str, List[dict]] = {label: [] for label in MODELS}
    jobs = [(label, seed) for seed in args.seeds for label in MODELS]
    for label, seed in tqdm(jobs, desc="runs", disable=args.no_progress):
        model, config = MODELS[label]
        experiment = f"{model}-seed{seed}"
        run_dir = os.path.join(args.out, experiment)
        if trained_epochs(run_dir) < args.epochs:
            os.makedirs(run_dir, exist_ok=True)
            run(train_command(args, model, config, seed, experiment, run_dir), os.path.join(run_dir, "train.log"),
                args.threads)
        val, perturbed = evaluate(args, run_dir, "val"), evaluate(args, run_dir, "val_perturbed")
        results[label].append({"seed": seed, "val_top1": val["top1"], "perturbed_top1": perturbed["top1"],
                               "val_top5": val["top5"], "perturbed_top5": perturbed["top5"]})
        if args.cameras and label == TRL_LABEL:
            results[label][-1]["cameras"] = {split: evaluate(args, run_dir, f"{split}_cameras")["cameras"]
                                             for split in ("val", "train")}
    summary = summarise_runs(results)
    if args.cameras:
        summary[TRL_LABEL]["cameras"] = camera_summary(results[TRL_LABEL])
    write_json_atomic({"settings": vars(args), "runs": results, "summary": summary},
                      os.path.join(args.out, "results.json"))
    table = markdown(summary, args)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    run_cli(main)
