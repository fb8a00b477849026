"""Training throughput (images/s, data loading included) of ViT-T + 3DTRL vs ViT-T through i1k.sh.

    python benchmarks/bench_imagenet_train.py --data data/objects_small

Each measurement is one epoch of imagenet_train.py launched by i1k.sh with 1 and 2 processes,
read from the run's ``metrics.json`` (``train_img_per_s``: all processes' images over the
epoch after its first batch). The epoch uses a subset of ``--data`` (``--per-class`` training
images per class, linked into a temporary ImageFolder). On the CPU: float32, gloo. With CUDA:
bf16 AMP, channels-last, batch 256 per process, one process per GPU count in ``--procs``.
Writes ``results.json`` in ``--out`` and prints a table.
"""
import argparse
import json
import os
import subprocess
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from threedtrl.runtime import UserError, run_cli, write_json_atomic

MODELS = {"ViT-T": "vit_tiny_patch16_224", "ViT-T + 3DTRL": "vit_3dtrl_tiny_patch16_224"}


def parse_args(argv=None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/objects_small", help="ImageFolder root with train/ and val/")
    parser.add_argument("--out", default="output/bench_imagenet_train")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--img-size", type=int, default=224 if cuda else 112)
    parser.add_argument("-b", "--batch-size", type=int, default=256 if cuda else 16)
    parser.add_argument("--per-class", type=int, default=2000 if cuda else 24,
                        help="training images per class in the benchmark epoch")
    parser.add_argument("-j", "--workers", type=int, default=8 if cuda else 1)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS per process (CPU)")
    return parser.parse_args(argv)


def subset_folder(data: str, per_class: int, target: str) -> int:
    """Link ``per_class`` training images (repeated if fewer) and 2 val images per class into ``target``."""
    total = 0
    for split, count in (("train", per_class), ("val", 2)):
        split_dir = os.path.join(data, split)
        if not os.path.isdir(split_dir):
            raise UserError(f"no {split}/ folder in {data}")
        for name in sorted(os.listdir(split_dir)):
            files = sorted(f for f in os.listdir(os.path.join(split_dir, name)) if not f.startswith("."))
            if not files:
                raise UserError(f"class folder {os.path.join(split_dir, name)} holds no images")
            os.makedirs(os.path.join(target, split, name))
            for i in range(count):
                source = os.path.abspath(os.path.join(split_dir, name, files[i % len(files)]))
                os.symlink(source, os.path.join(target, split, name, f"{i:06d}{os.path.splitext(source)[1]}"))
            total += count if split == "train" else 0
    return total


def measure(args, folder: str, model: str, procs: int, out: str) -> float:
    experiment = f"{model}-{procs}p"
    flags = ["--model", model, "--img-size", str(args.img_size), "-b", str(args.batch_size), "--epochs", "1",
             "--warmup-epochs", "0", "--cooldown-epochs", "0", "--mixup", "0.8", "--cutmix", "1.0",
             "--aa", "rand-m9-mstd0.5-inc1", "-j", str(args.workers), "--output", out, "--experiment", experiment,
             "--no-progress"]
    if torch.cuda.is_available():
        flags += ["--amp", "--amp-dtype", "bfloat16", "--channels-last", "--pin-mem"]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    result = subprocess.run(["bash", os.path.join(ROOT, "i1k.sh"), str(procs), folder] + flags, cwd=ROOT, env=env,
                            capture_output=True, text=True)
    if result.returncode:
        raise UserError(f"{experiment} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    with open(os.path.join(out, experiment, "metrics.json")) as f:
        return json.load(f)["epochs"][0]["train_img_per_s"]


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = subset_folder(args.data, args.per_class, os.path.join(tmp, "data"))
        for procs in args.procs:
            rates = {label: measure(args, os.path.join(tmp, "data"), name, procs, os.path.join(tmp, "runs"))
                     for label, name in MODELS.items()}
            rows.append({"procs": procs, **rates, "ratio": rates["ViT-T + 3DTRL"] / rates["ViT-T"]})
            print(f"{procs} process(es): ViT-T {rates['ViT-T']:.1f} img/s, ViT-T + 3DTRL "
                  f"{rates['ViT-T + 3DTRL']:.1f} img/s, ratio {rows[-1]['ratio']:.3f}", flush=True)
    settings = dict(vars(args), device=device, train_images=images, torch=torch.__version__)
    write_json_atomic({"settings": settings, "rows": rows}, os.path.join(args.out, "results.json"))
    print(f"\n{device}, {args.img_size} px, batch {args.batch_size} per process, {images} training images")
    print("| processes | ViT-T (img/s) | ViT-T + 3DTRL (img/s) | ratio |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['procs']} | {row['ViT-T']:.1f} | {row['ViT-T + 3DTRL']:.1f} | {row['ratio']:.3f} |")


if __name__ == "__main__":
    run_cli(main)
