"""Rebuild every figure in ``_doc/`` from data and checkpoints this project makes itself (``make figures``).

1. renders the embedded Panda FTPV data (``data_pipeline.render_ftpv``, demo preset with four
   third-person views) unless it is already complete;
2. trains a 3DTRL ViT and the same ViT without 3DTRL on it with the demo's recipe
   (``multiview_video_alignment.py``, seen setting), unless their runs have finished; an
   interrupted run resumes;
3. draws the figures of a test trajectory and the geometry against the renderer's ground truth
   with ``visualize.py``, and the layer diagram.

Every step is seeded, so a second run from scratch writes the same figures.

    python tools/make_figures.py            # or: make figures
"""
import argparse
import os
import shlex
import shutil
import subprocess
import sys
from typing import List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from data_pipeline import DATASETS, trajectory_name
from threedtrl.tools.compare_alignment import DEMO_RECIPE
from threedtrl.runtime import UserError, run_cli
from threedtrl.visualization.diagram import draw_layer_diagram

TEST_TRAJECTORY = trajectory_name(15)
MODELS = {"3dtrl": "vit_3dtrl_tiny_patch16_224", "baseline": "vit_plain_tiny_patch16_224"}
FIGURES = ("depth.png", "depth.gif", "tokens3d.png", "tokens3d.gif", "cameras.png", "alignment.gif",
           "alignment.png")
GEOMETRY_FIGURES = ("geometry_depth.png", "geometry_cameras.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--doc", default="_doc", help="folder of the README's figures")
    p.add_argument("--data_root", default="data/figures_ftpv", help="where the data is rendered")
    p.add_argument("--runs", default="output/figures", help="where the two models are trained")
    p.add_argument("--seed", type=int, default=0, help="seed of rendering, training and initialisation")
    p.add_argument("--img_size", type=int, default=64, help="frame size (rendered and seen by the models)")
    p.add_argument("--train_args", default=DEMO_RECIPE + " --epochs 20 --patience 20",
                   help="the training recipe (multiview_video_alignment.py flags): the demo's, 20 epochs")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.add_argument("--xpar", action="store_true", help="turn progress bars off")
    return p


def run(command: Sequence[str]) -> None:
    """Run a step of the pipeline with this Python; a failing step stops everything."""
    print("+ " + " ".join(command), flush=True)
    result = subprocess.run([sys.executable, *command], cwd=ROOT)
    if result.returncode != 0:
        raise UserError(f"step failed with exit code {result.returncode}: {' '.join(command)}")


def render_data(args: argparse.Namespace) -> str:
    """Render the figures' data set (eased pacing: the frames the figures in ``_doc/`` were drawn from)."""
    run(["-m", "data_pipeline.render_ftpv", "--out", args.data_root, "--preset", "demo", "--size",
         str(args.img_size), "--views", "4", "--seed", str(args.seed), "--pacing", "eased",
         "--workers", str(args.workers)]
        + (["--xpar"] if args.xpar else []))
    return os.path.join(args.data_root, DATASETS["panda"].folder, TEST_TRAJECTORY)


def train(args: argparse.Namespace, name: str) -> str:
    """Train (or resume, or reuse) one model; returns its best checkpoint."""
    out = os.path.join(args.runs, name)
    if not os.path.isfile(os.path.join(out, "results.json")):
        resume = ["--resume"] if os.path.isfile(os.path.join(out, "last.pth")) else []
        run(["multiview_video_alignment.py", "--data", "panda", "--data_root", args.data_root, "--train_views", "-1",
             "--model", MODELS[name], *shlex.split(args.train_args), "--img_size", str(args.img_size),
             "--seed", str(args.seed), "--num_workers", "0", "--device", "cpu",
             "--output_dir", out] + resume + (["--xpar"] if args.xpar else []))
    return os.path.join(out, "best.pth")


def draw(args: argparse.Namespace, trajectory: str, checkpoints: dict) -> None:
    """Figures of the test trajectory into a scratch folder, then only the figures into ``--doc``."""
    scratch = os.path.join(args.runs, "visualize")
    run(["visualize.py", "--checkpoint", checkpoints["3dtrl"], "--baseline", checkpoints["baseline"],
         "--trajectory", trajectory, "--out", scratch, "--label", "3DTRL", "--baseline_label", "ViT",
         "--display_size", str(args.img_size), "--seed", str(args.seed)] + (["--xpar"] if args.xpar else []))
    geometry = os.path.join(args.runs, "geometry")
    run(["visualize.py", "--checkpoint", checkpoints["3dtrl"], "--geometry_eval", args.data_root, "--out", geometry,
         "--seed", str(args.seed)] + (["--xpar"] if args.xpar else []))
    os.makedirs(args.doc, exist_ok=True)
    for folder, names in ((scratch, FIGURES), (geometry, GEOMETRY_FIGURES)):
        for name in names:
            shutil.copyfile(os.path.join(folder, name), os.path.join(args.doc, name))
    draw_layer_diagram(os.path.join(args.doc, "3dtrl_layer.png"))


def main(argv: Optional[List[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    os.chdir(ROOT)
    trajectory = render_data(args)
    checkpoints = {name: train(args, name) for name in MODELS}
    draw(args, trajectory, checkpoints)
    print(f"figures written to {args.doc}/")


if __name__ == "__main__":
    run_cli(main)
