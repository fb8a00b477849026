"""The reprojection objective's landscape on an FTPV root's ground truth, at several token grids, no model.

With the true depths and the renderer's pinhole, every view's camera is moved a fraction of the way
from one identical camera for all views (0) to its true pose (1), and ``--geometry_loss reprojection``
is measured at each step (``reprojection_path`` of the geometry evaluation, here for any grid, not
only the layer's). Where the path rises above a value it already reached
before falling to the truth, a descent from nearly identical cameras has a barrier to climb.

    python tools/reprojection_landscape.py --data_root data/ftpv_demo --grids 4 8 16

Writes ``--out`` (JSON: per grid the path, its climb and the truth against identical cameras)
and prints one line per grid.
"""
import argparse
import os
from typing import Dict, Optional, Sequence

import threedtrl.runtime.compat  # noqa: F401  (the torchvision remedy, before the first timm/torchvision import)
import numpy as np
import torch
from tqdm import tqdm

from data_pipeline import TrajectoryDataset, open_split, view_folder_names
from data_pipeline.ground_truth import load_ground_truth
from threedtrl.runtime import UserError, read_json, run_cli, write_json_atomic
from threedtrl.visualization import geometry_eval
from threedtrl.visualization.inference import patch_colours

TOOL = "reprojection_landscape"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_root", required=True, help="an FTPV root rendered by this project (with ground truth)")
    p.add_argument("--data", default="panda", help="the data set's name, as for multiview_video_alignment.py")
    p.add_argument("--split", default="test")
    p.add_argument("--train_views", type=int, default=6,
                   help="training cameras (the first K); the test split then holds the unseen ones, -1: every view")
    p.add_argument("--img_size", type=int, default=64, help="frame size the token colours are pooled from")
    p.add_argument("--grids", nargs="+", type=int, default=[4, 8, 16], help="token grids (n: n x n tokens)")
    p.add_argument("--out", default="output/reprojection_landscape.json")
    p.add_argument("--no-progress", action="store_true")
    return p


def check_out(path: str) -> None:
    """Refuse to replace a file this tool did not write."""
    if os.path.isdir(path):
        raise UserError(f"--out {path} is a folder; give a file name")
    if os.path.exists(path):
        try:
            written_here = read_json(path).get("tool") == TOOL
        except (UserError, AttributeError, ValueError):  # not JSON, or not a mapping
            written_here = False
        if not written_here:
            raise UserError(f"--out {path} exists and was not written by this tool; give another file name")


def landscape(path: Dict[str, float]) -> Dict:
    """A path's summary: its values, the truth against identical cameras, and its climb: the largest
    rise over the lowest value before it (0: a descent along the path never goes up)."""
    fractions = sorted(path, key=float)
    values = np.array([path[f] for f in fractions])
    rise = values - np.minimum.accumulate(values)
    top = int(rise.argmax())
    return {"path": {f: path[f] for f in fractions}, "identical_cameras": float(values[0]), "truth": float(values[-1]),
            "truth_below_identical": float(values[0] - values[-1]),
            "climb": {"value": float(rise[top]), "to_fraction": float(fractions[top])}}


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    if any(g < 1 for g in args.grids):
        raise UserError(f"--grids must be positive, got {args.grids}")
    check_out(args.out)
    trajectories, views = open_split(args.data_root, args.data, args.split, args.train_views)
    with_truth = set(geometry_eval.check_has_ground_truth([t.path for t in trajectories]))
    trajectories = [t for t in trajectories if t.path in with_truth]
    names = view_folder_names(views)
    data = TrajectoryDataset(trajectories, args.img_size, progress=not args.no_progress, desc="decode")
    scores = {g: geometry_eval.GeometryScores() for g in args.grids}
    for k, trajectory in enumerate(tqdm(trajectories, desc="landscape", unit="traj", disable=args.no_progress)):
        truth = load_ground_truth(trajectory.path, names)
        frames = torch.from_numpy(data[k].numpy())                       # (V, T, 3, S, S) uint8
        for g, score in scores.items():
            colours = patch_colours(frames.flatten(0, 1), (g, g)).numpy().reshape(*frames.shape[:2], g * g, 3)
            score.add_reprojection_references(truth, colours, (g, g))
    grids = {str(g): landscape({f: float(np.mean(v)) for f, v in s.reprojection_path.items()})
             for g, s in scores.items()}
    write_json_atomic({"tool": TOOL, "data_root": args.data_root, "split": args.split, "train_views": args.train_views,
                       "views": names, "img_size": args.img_size, "trajectories": [t.name for t in trajectories],
                       "grids": grids}, args.out)
    for g, row in grids.items():
        values = " ".join(f"{v:.4f}" for v in row["path"].values())
        print(f"{g}x{g}: {values} | climb {row['climb']['value']:.4f} (to {row['climb']['to_fraction']:.1f}), "
              f"truth {row['truth_below_identical']:+.4f} below identical cameras")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    run_cli(main)
