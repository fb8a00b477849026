"""The GPU paths of every task in one call, from data made beforehand on the CPU.

    python tools/gpu_check.py --prepare                 # on any machine: render the check's data (CPU)
    python tools/gpu_check.py                           # on the GPU machine: run every check (make gpu-check)

On a CUDA GPU it runs, each step in its own process with a time limit:

- ImageNet training through ``i1k.sh 1`` on the rendered object ImageFolder: AMP float16 (grad
  scaler) with channels-last, then bfloat16 with ``--torchcompile`` (inductor); ``imagenet_val.py``
  plain and ``--perturbed``;
- alignment: the demo's recipe with ``--device cuda --compile``;
- action recognition: the demo config with ``TRAIN.MIXED_PRECISION True`` and ``MODEL.COMPILE True``,
  training and test;
- the benchmarks: ViT-T and ViT-S 3DTRL vs plain at batch 256 (bf16 autocast, channels-last, eager
  and compiled, training and inference, peak memory) and TimeSformer ViT-B 8x224 with and without
  3DTRL.

Without CUDA the same command runs a reduced version of every step on the CPU (small models, an
epoch or two, no AMP or compilation), so that the check itself is tested. Either way it writes one
JSON report (``--out``/report.json) and prints a table naming the device, torch and CUDA versions,
every step's exit status and seconds, a figure showing that it learned, and every speed and memory
figure beside its target.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)
import torch

from threedtrl.runtime import UserError, run_cli, write_json_atomic

# Targets of the GPU figures: 3DTRL / plain training throughput (ViT-T, ViT-S; eager and compiled),
# TimeSformer ViT-B + 3DTRL / TimeSformer, and the layer's memory overhead.
VIT_RATIO_TARGET = 0.97
TIMESFORMER_RATIO_TARGET = 0.95
MEMORY_OVERHEAD_TARGET = 0.03
TRAIN_VIEWS = 2  # third-person views the alignment trains on (the rest are unseen)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/gpu_check", help="the check's data (made by --prepare)")
    parser.add_argument("--out", default=None, help="output folder (default output/gpu_check/<time>)")
    parser.add_argument("--prepare", action="store_true", help="render the check's data and exit")
    parser.add_argument("--cpu", action="store_true", help="the reduced CPU version even where CUDA is present")
    parser.add_argument("--timeout", type=int, default=300, help="seconds each step may take")
    parser.add_argument("--skip", nargs="*", default=[], help="steps to leave out (names as in the report)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- data

def data_paths(data: str) -> Dict[str, str]:
    return {"objects": os.path.join(data, "objects"), "ftpv": os.path.join(data, "ftpv"),
            "actions": os.path.join(data, "actions")}


def prepare(data: str) -> None:
    """Render the three data sets (small enough to travel with the working tree: tens of MB)."""
    paths = data_paths(data)
    commands = [
        [sys.executable, "tools/render_objects.py", "--out", paths["objects"], "--preset", "tiny", "--size", "64",
         "--no-progress"],
        [sys.executable, "-m", "data_pipeline.render_ftpv", "--out", paths["ftpv"], "--preset", "demo", "--views", "3",
         "--frames", "8", "--size", "32", "--workers", "2"],
        [sys.executable, "action_recognition/tools/render_actions.py", "--out", paths["actions"], "--preset", "tiny",
         "--workers", "2", "--no-progress"],
    ]
    for command in commands:
        if subprocess.call(command, cwd=ROOT) != 0:
            raise UserError(f"'{' '.join(command[1:3])} ...' failed; its message is above")


def check_data(data: str) -> Dict[str, str]:
    paths = data_paths(data)
    missing = [name for name, path in paths.items() if not os.path.isdir(path)]
    if missing:
        raise UserError(f"{data} lacks the check's {', '.join(missing)} data: run python tools/gpu_check.py --prepare "
                        f"--data {data} first (on any machine)")
    return paths


# ----------------------------------------------------------------------------- steps

def imagenet_steps(paths: Dict[str, str], out: str, gpu: bool) -> List[dict]:
    model = ["--model", "vit_3dtrl_tiny_patch16_224", "--img-size", "64", "--model-kwargs", "patch_size=8"]
    if not gpu:
        model[-1:] = ["patch_size=16", "depth=2", "--trl-depth", "1"]
    common = [*model, "--epochs", "4" if gpu else "2", "--warmup-epochs", "0", "--cooldown-epochs", "0", "-b", "8",
              "-j", "2" if gpu else "0", "--no-progress", "--lr", "1e-3", "--output", os.path.join(out, "imagenet")]
    variants = {"i1k_amp_fp16": ["--amp", "--amp-dtype", "float16", "--channels-last"],
                "i1k_amp_bf16_compiled": ["--amp", "--amp-dtype", "bfloat16", "--channels-last", "--torchcompile"]}
    if not gpu:
        variants = {"i1k_fp32": []}
    steps = []
    for name, flags in variants.items():
        steps.append({"name": name, "command": ["bash", "i1k.sh", "1", paths["objects"], *common, *flags,
                                                 "--experiment", name],
                      "learned": ("imagenet_metrics", os.path.join(out, "imagenet", name, "metrics.json"))})
    checkpoint = os.path.join(out, "imagenet", next(iter(variants)), "last.pth.tar")
    for perturbed in (False, True):
        name = "imagenet_val_perturbed" if perturbed else "imagenet_val"
        result = os.path.join(out, f"{name}.json")
        steps.append({"name": name, "command": [sys.executable, "imagenet_val.py", paths["objects"], "--checkpoint",
                                                checkpoint, "-j", "0", "--no-progress", "--results-file", result]
                      + (["--perturbed"] if perturbed else []) + (["--amp", "--channels-last"] if gpu else []),
                      "learned": ("imagenet_val", result)})
    return steps


def alignment_step(paths: Dict[str, str], out: str, gpu: bool) -> dict:
    run_dir = os.path.join(out, "alignment")
    recipe = ["--img_size", "32", "--loss", "npairs", "--depth", "4" if gpu else "2", "--trl_depth", "1",
              "--global_pool", "avg", "--views_per_clip", "0", "--clip_frames", "8", "--batch_size", "2",
              "--triplets_per_epoch", "32" if gpu else "8", "--epochs", "10" if gpu else "2", "--patience", "30",
              "--lr", "1e-3", "--num_workers", "0", "--xpar"]
    return {"name": "alignment", "command": [
        sys.executable, "multiview_video_alignment.py", "--data", "panda", "--data_root", paths["ftpv"],
        "--train_views", str(TRAIN_VIEWS), *recipe, "--device", "cuda" if gpu else "cpu",
        *(["--compile"] if gpu else []), "--output_dir", run_dir],
        "learned": ("alignment", os.path.join(run_dir, "results.json"))}


def action_step(paths: Dict[str, str], out: str, gpu: bool) -> dict:
    run_dir = os.path.join(out, "action")
    extra = ["TRAIN.MIXED_PRECISION", "True", "MODEL.COMPILE", "True", "NUM_GPUS", "1"] if gpu else [
        "TIMESFORMER.EMBED_DIM", "48", "TIMESFORMER.DEPTH", "2", "TRL.LOC", "1", "NUM_GPUS", "1"]
    return {"name": "action", "command": [
        sys.executable, "action_recognition/tools/run_net.py", "--cfg",
        "action_recognition/configs/TimeSformer_3DTRL_demo_cpu.yaml", "DATA.PATH_TO_DATA_DIR", paths["actions"],
        "OUTPUT_DIR", run_dir, "SOLVER.MAX_EPOCH", "3" if gpu else "2", "LOG.PROGRESS", "False",
        "DATA_LOADER.NUM_WORKERS", "2" if gpu else "0", *extra],
        "learned": ("action", os.path.join(run_dir, "results.json"))}


def benchmark_steps(out: str, gpu: bool) -> List[dict]:
    models_json, timesformer_json = os.path.join(out, "bench_models.json"), os.path.join(out, "bench_timesformer.json")
    if gpu:
        models = ["--sizes", "tiny", "small", "--compile-sizes", "tiny", "small", "--batch-size", "256",
                  "--channels-last", "--rounds", "15", "--metric-rounds", "3", "--device", "cuda"]
        timesformer = ["--device", "cuda", "--size", "vit_b_8x224", "--batch", "8", "--rounds", "3", "--iters", "5",
                       "--loader-videos", "0"]
    else:
        models = ["--sizes", "tiny", "--compile-sizes", "--batch-size", "2", "--rounds", "2", "--frames", "30",
                  "--metric-rounds", "1", "--device", "cpu"]
        timesformer = ["--device", "cpu", "--size", "demo", "--batch", "2", "--rounds", "1", "--iters", "1",
                       "--loader-videos", "0"]
    return [{"name": "bench_models", "command": [sys.executable, "benchmarks/bench_models.py", *models, "--json",
                                                  models_json], "learned": ("bench_models", models_json)},
            {"name": "bench_timesformer", "command": [
                sys.executable, "action_recognition/benchmarks/bench_timesformer.py", *timesformer, "--out",
                timesformer_json], "learned": ("bench_timesformer", timesformer_json)}]


def all_steps(paths: Dict[str, str], out: str, gpu: bool) -> List[dict]:
    """Every step of the check, in the order it runs (the GPU version's where ``gpu``)."""
    return [*imagenet_steps(paths, out, gpu), alignment_step(paths, out, gpu), action_step(paths, out, gpu),
            *benchmark_steps(out, gpu)]


# ----------------------------------------------------------------------------- what each step shows

def _json(path: str):
    with open(path) as f:
        return json.load(f)


def evidence(kind: str, path: str, gpu: bool) -> Dict:
    """What a finished step shows: a loss or metric that says it learned, and the figures with their
    targets (``ok`` per target; targets apply on the GPU only)."""
    if not os.path.isfile(path):
        return {"missing": path}
    data = _json(path)
    if kind == "imagenet_metrics":
        epochs = data["epochs"]
        return {"train_loss_first": epochs[0]["train_loss"], "train_loss_last": epochs[-1]["train_loss"],
                "val_top1": epochs[-1]["eval_top1"], "learned": epochs[-1]["train_loss"] < epochs[0]["train_loss"]
                if len(epochs) > 1 else None}
    if kind == "imagenet_val":
        return {"top1": data["top1"], "top5": data["top5"], "weights": data["weights"]}
    if kind == "alignment":
        before, after = data["initial"]["val"], data["val"]
        return {"val_alignment_error_before": before["alignment_error"], "val_alignment_error_after":
                after["alignment_error"], "learned": after["alignment_error"] < before["alignment_error"]}
    if kind == "action":
        train = data.get("train", [])
        return {"train_loss_first": train[0]["loss"] if train else None, "train_loss_last": train[-1]["loss"]
                if train else None, "test_top1": data.get("test", {}).get("top1"),
                "learned": train[-1]["loss"] < train[0]["loss"] if len(train) > 1 else None}
    if kind == "bench_models":
        figures = {}
        for size, result in data["sizes"].items():
            for mode in ("train", "inference"):
                figures[f"vit_{size}_{mode}_ratio"] = _target(result[mode]["ratio"]["median"], VIT_RATIO_TARGET,
                                                              gpu and mode == "train")
                if "compiled_ratio" in result[mode]:
                    figures[f"vit_{size}_{mode}_compiled_ratio"] = _target(
                        result[mode]["compiled_ratio"]["median"], VIT_RATIO_TARGET, gpu and mode == "train")
                if "memory_overhead" in result[mode]:
                    figures[f"vit_{size}_{mode}_memory_overhead"] = _target(
                        result[mode]["memory_overhead"], MEMORY_OVERHEAD_TARGET, gpu, at_most=True)
            figures[f"vit_{size}_mac_limit"] = result["mac_limit"]
        return figures
    if kind == "bench_timesformer":
        figures = {f"timesformer_{mode}_ratio": _target(data["clips_per_s"][f"{mode}_ratio_3dtrl"],
                                                        TIMESFORMER_RATIO_TARGET, gpu and mode == "train")
                   for mode in ("train", "inference")}
        for mode, overhead in data.get("memory_overhead", {}).items():
            figures[f"timesformer_{mode}_memory_overhead"] = _target(overhead, MEMORY_OVERHEAD_TARGET, gpu,
                                                                     at_most=True)
        return figures
    raise ValueError(kind)


def _target(value: float, target: float, applies: bool, at_most: bool = False) -> Dict:
    ok = (value <= target if at_most else value >= target) if applies else None
    return {"value": value, "target": f"{'<=' if at_most else '>='} {target}" if applies else None, "ok": ok}


# ----------------------------------------------------------------------------- running

def run_step(step: dict, out: str, timeout: int, gpu: bool) -> Dict:
    log = os.path.join(out, "logs", f"{step['name']}.log")
    start = time.perf_counter()
    with open(log, "w") as f:
        try:
            code = subprocess.run(step["command"], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                                  env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
                                  ).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    record = {"exit": code, "seconds": round(time.perf_counter() - start, 1), "log": log,
              "command": " ".join(step["command"])}
    if code == 0:
        record["shows"] = evidence(*step["learned"], gpu)
    return record


def environment(gpu: bool) -> Dict:
    return {"device": torch.cuda.get_device_name(0) if gpu else f"CPU ({platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores)", "torch": torch.__version__, "cuda": torch.version.cuda if gpu else None,
            "mode": "gpu" if gpu else "cpu (reduced)"}


def print_table(report: Dict) -> None:
    env = report["environment"]
    print(f"\n{env['device']} | torch {env['torch']} | CUDA {env['cuda']} | {env['mode']}")
    print(f"{'step':26s} {'exit':>7s} {'s':>7s}  shows")
    for name, record in report["steps"].items():
        shows = record.get("shows", {})
        parts = []
        for key, value in shows.items():
            if isinstance(value, dict) and "value" in value:
                mark = "" if value["ok"] is None else (" ok" if value["ok"] else " MISSED")
                parts.append(f"{key} {value['value']:.3f}{' (' + value['target'] + mark + ')' if value['target'] else ''}")
            elif isinstance(value, float):
                parts.append(f"{key} {value:.4g}")
            else:
                parts.append(f"{key} {value}")
        print(f"{name:26s} {str(record['exit']):>7s} {record['seconds']:7.1f}  " + "; ".join(parts))
    print(f"report: {report['path']}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.prepare:
        prepare(args.data)
        return
    paths = check_data(args.data)
    gpu = torch.cuda.is_available() and not args.cpu
    out = os.path.abspath(args.out or os.path.join("output", "gpu_check", time.strftime("%Y%m%d-%H%M%S")))
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    steps = all_steps(paths, out, gpu)
    report = {"environment": environment(gpu), "steps": {}, "path": os.path.join(out, "report.json")}
    for step in steps:
        if step["name"] in args.skip:
            continue
        print(f"{step['name']} ...", flush=True)
        report["steps"][step["name"]] = run_step(step, out, args.timeout, gpu)
        write_json_atomic(report, report["path"])
    print_table(report)
    failed = [name for name, record in report["steps"].items() if record["exit"] != 0]
    if failed:
        raise UserError(f"{len(failed)} step(s) failed: {', '.join(failed)} (logs in {os.path.join(out, 'logs')})")


if __name__ == "__main__":
    run_cli(main)
