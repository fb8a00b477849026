"""Render the embedded cross-view action data set (Panda arm, pybullet, mp4 + CSV lists).

    python tools/render_actions.py --out data/panda_actions --preset small --workers 2
"""
import argparse
import os


import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)
from threedtrl.timesformer.render import PRESETS, render_dataset
from threedtrl.runtime import UserError, run_cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (existing complete videos are kept)")
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS), help="data set size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the randomised action parameters")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out} exists and is not a folder")
    counts = render_dataset(args.out, args.preset, args.seed, args.workers, progress=not args.no_progress)
    print(f"wrote {args.out}: " + ", ".join(f"{split} {n} clips" for split, n in counts.items()))


if __name__ == "__main__":
    run_cli(main)
