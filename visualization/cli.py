"""See what 3DTRL recovers: pseudo-depth, tokens in 3D, cameras, and multi-view video alignment.

Runs a 3DTRL model (a checkpoint of ``multiview_video_alignment.py``, or a randomly initialised
model when none is given) once over every frame, and writes into ``--out``:

    depth.png      input images above their per-token pseudo-depth (one column per view)
    depth.gif      the same over the video (trajectories)
    tokens3d.png   every patch token at its recovered world position, in the patch's mean colour
    tokens3d.gif   the same, rotating
    cameras.png    the estimated cameras of all views of one instant as frusta in one world frame
    alignment.gif  first-person frames beside their nearest third-person frames (trajectories;
                   3DTRL and, with --baseline, the baseline model)
    alignment.png  nearest-neighbour frame index vs frame index for every shown third-person view
    geometry.npz   the recovered depth, world points and cameras; summary.json: what was written

    python visualize.py --checkpoint output/figures/3dtrl/best.pth \\
        --baseline output/figures/baseline/best.pth --trajectory data/ftpv_figures/Pandav1_Train_Frame/tr_0015
    python visualize.py --images a.jpg b.jpg --img_size 224          # random init, still images

With ``--geometry_eval FTPV_ROOT`` it instead compares what the layer recovers with the
renderer's ground truth on every trajectory of ``--split`` (all views) and writes
``geometry.json`` (see visualization/geometry_eval.py):

    python visualize.py --checkpoint CKPT --geometry_eval data/ftpv --out DIR [--data panda --split test]
"""
import argparse
import os
from typing import Dict, List, Optional, Sequence, Tuple

import threedtrl.runtime.compat  # noqa: F401  (must precede the first timm/torchvision import)

import numpy as np
import torch
from tqdm import tqdm

from data_pipeline.ground_truth import load_ground_truth
from threedtrl.alignment.geometry_objectives import layer_pinhole
from threedtrl.alignment.metrics import alignment_error_of_matches
from threedtrl.runtime import UserError, atomic_write, prepare_output_dir, read_json, run_cli, write_json_atomic
from threedtrl.visualization import frames as frame_io
from threedtrl.visualization import plots
from threedtrl.visualization import geometry_eval
from threedtrl.visualization.inference import (Recovered, has_3dtrl, load_embedder, nearest_frames, random_twin,
                                               recover)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--trajectory", help="an FTPV trajectory folder (holding fpv/ and tpv/view_XXXX/)")
    source.add_argument("--images", nargs="+", help="still images, shown as views of one instant")
    source.add_argument("--geometry_eval", metavar="FTPV_ROOT",
                        help="compare pseudo-depth and cameras with the ground truth of rendered FTPV data")
    p.add_argument("--data", default="panda", help="--geometry_eval: FTPV data set")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="--geometry_eval: split")
    p.add_argument("--train_views", type=int, default=-1,
                   help="--geometry_eval: -1: every view; K: the views --split has in the setting of "
                        "multiview_video_alignment.py --train_views K (test: the cameras beyond the first K, never "
                        "trained on)")
    p.add_argument("--checkpoint", default=None,
                   help="3DTRL checkpoint of multiview_video_alignment.py (default: random init of --model)")
    p.add_argument("--baseline", default=None, help="checkpoint of a second model to compare alignments with")
    p.add_argument("--model", default="vit_3dtrl_tiny_patch16_224", help="model to initialise without --checkpoint")
    p.add_argument("--img_size", type=int, default=224, help="input size of the model without --checkpoint")
    p.add_argument("--label", default="3DTRL", help="name of the model in the figures")
    p.add_argument("--baseline_label", default="baseline", help="name of the baseline in the figures")
    p.add_argument("--views", type=int, nargs="+", default=None,
                   help="third-person views of the trajectory to show (default: the first --max_views)")
    p.add_argument("--max_views", type=int, default=4)
    p.add_argument("--instant", type=int, default=None, help="frame shown in the still figures (default: middle)")
    p.add_argument("--out", default="output/visualize", help="folder the figures are written to")
    p.add_argument("--display_size", type=int, default=128, help="side of the images in the figures")
    p.add_argument("--fps", type=float, default=4.0, help="frames per second of the video GIFs")
    p.add_argument("--turn_frames", type=int, default=20, help="frames of the rotating 3D GIF")
    p.add_argument("--batch_size", type=int, default=32, help="frames per forward pass")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    p.add_argument("--xpar", action="store_true", help="turn progress bars off")
    return p


def check_args(args: argparse.Namespace) -> None:
    for name in ("img_size", "display_size", "batch_size", "max_views", "turn_frames"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    if args.fps <= 0:
        raise UserError(f"--fps must be positive, got {args.fps}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device} asked for, but CUDA is not available")
    if args.baseline and args.label == args.baseline_label:
        raise UserError(f"--label and --baseline_label must differ, both are {args.label!r}")
    if args.images and args.baseline:
        raise UserError("--baseline compares video alignments: it needs --trajectory")


# ----------------------------------------------------------------------------- inputs and models

def open_source(args: argparse.Namespace) -> frame_io.Source:
    if args.trajectory:
        return frame_io.open_trajectory_source(args.trajectory, args.views, args.max_views)
    return frame_io.open_images_source(args.images)


def pick_instant(args: argparse.Namespace, length: int) -> int:
    instant = length // 2 if args.instant is None else args.instant
    if not 0 <= instant < length:
        raise UserError(f"--instant must be in 0..{length - 1}, got {instant}")
    return instant


# ----------------------------------------------------------------------------- figures

def write_depth(rec: Recovered, display: np.ndarray, names: Sequence[str], instant: int, out: str,
                fps: float, progress: bool) -> List[str]:
    """depth.png at ``instant`` and, for videos, depth.gif (colour scale fixed per view over time)."""
    limits = [plots.depth_limits(rec.depth[k]) for k in range(len(names))]
    h, w = rec.grid_size
    still = plots.depth_figure(display[:, instant], rec.depth[:, instant], names, limits,
                               f"pseudo-depth per token ({h}x{w}), frame {instant}; low → high: dark → yellow")
    plots.save_png(still, os.path.join(out, "depth.png"))
    written = ["depth.png"]
    length = display.shape[1]
    if length > 1:
        frames = [plots.depth_figure(display[:, t], rec.depth[:, t], names, limits,
                                     f"pseudo-depth per token ({h}x{w}), frame {t}")
                  for t in tqdm(range(length), desc="depth.gif", disable=not progress, leave=False)]
        plots.save_gif(frames, os.path.join(out, "depth.gif"), fps)
        written.append("depth.gif")
    return written


def write_tokens(rec: Recovered, names: Sequence[str], instant: int, out: str, turn_frames: int,
                 progress: bool) -> List[str]:
    """tokens3d.png (four azimuths) and tokens3d.gif (a full turn) of all views at ``instant``."""
    points = rec.points_world[:, instant].reshape(-1, 3)
    colours = rec.patch_colours[:, instant].reshape(-1, 3)
    title = f"{len(points)} tokens of {', '.join(names)} (frame {instant}) in the world frame"
    plots.save_png(plots.tokens_figure(points, colours, (-60, 0, 60, 120), title), os.path.join(out, "tokens3d.png"))
    turn = [plots.tokens_figure(points, colours, (-60 + 360 * k / turn_frames,), "tokens in 3D",
                                panel=plots.TURN_PANEL)
            for k in tqdm(range(turn_frames), desc="tokens3d.gif", disable=not progress, leave=False)]
    plots.save_gif(turn, os.path.join(out, "tokens3d.gif"), fps=12)
    return ["tokens3d.png", "tokens3d.gif"]


def write_cameras(rec: Recovered, names: Sequence[str], instant: int, out: str) -> List[str]:
    image = plots.cameras_figure(rec.points_world[:, instant], rec.rotation[:, instant], rec.translation[:, instant],
                                 rec.depth[:, instant].reshape(len(names), -1), rec.grid_size, names, (-60, 30),
                                 f"estimated cameras of {len(names)} views at frame {instant}, one world frame")
    plots.save_png(image, os.path.join(out, "cameras.png"))
    return ["cameras.png"]


def match_views(models: Dict[str, Recovered]) -> Tuple[Dict[str, Dict[str, np.ndarray]], Dict[str, Dict[str, float]]]:
    """For every third-person view and model: nearest frame of that view to each first-person
    frame, and the alignment error of the pair."""
    nearest, errors = {}, {}
    any_rec = next(iter(models.values()))
    for k in range(1, any_rec.embeddings.shape[0]):
        nearest[k], errors[k] = {}, {}
        for name, rec in models.items():
            z = rec.embeddings
            nearest[k][name] = nearest_frames(z[0], z[k])
            errors[k][name] = alignment_error_of_matches(nearest[k][name])
    return nearest, errors


def write_alignment(models: Dict[str, Recovered], display: np.ndarray, names: Sequence[str], out: str, fps: float,
                    progress: bool) -> Tuple[List[str], Dict]:
    """alignment.gif (first-person vs the first third-person view) and alignment.png (every view)."""
    nearest, errors = match_views(models)
    length = display.shape[1]
    frames = []
    for t in tqdm(range(length), desc="alignment.gif", disable=not progress, leave=False):
        matches = {name: (display[1, nearest[1][name][t]], int(nearest[1][name][t])) for name in models}
        frames.append(plots.alignment_frame(display[0, t], display[1, t], matches, t, length, names[1]))
    plots.save_gif(frames, os.path.join(out, "alignment.gif"), fps)
    by_name = {names[k]: v for k, v in nearest.items()}
    errors_by_name = {names[k]: v for k, v in errors.items()}
    plots.save_png(plots.alignment_plot({(names[0], view): v for view, v in by_name.items()},
                                        {(names[0], view): v for view, v in errors_by_name.items()},
                                        "multi-view alignment: first person -> third person"),
                   os.path.join(out, "alignment.png"))
    summary = {view: {name: {"alignment_error": errors_by_name[view][name],
                             "nearest": by_name[view][name].tolist()} for name in models} for view in by_name}
    return ["alignment.gif", "alignment.png"], summary


def write_geometry(rec: Recovered, names: Sequence[str], out: str) -> None:
    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, depth=rec.depth, points_world=rec.points_world, rotation=rec.rotation,
                                translation=rec.translation, patch_colours=rec.patch_colours,
                                views=np.array(names))
    atomic_write(os.path.join(out, "geometry.npz"), save)


# ----------------------------------------------------------------------------- geometry evaluation

def evaluate_geometry(args: argparse.Namespace, progress: bool) -> None:
    """geometry.json: the model's pseudo-depth and cameras against the ground truth of every
    trajectory of ``--split`` that has it, beside a randomly initialised twin and reference cameras."""
    from data_pipeline import TrajectoryDataset, open_split, view_folder_names

    embedder, cfg = load_embedder(args.checkpoint, args.model, args.img_size, args.seed)
    if not has_3dtrl(embedder):
        raise UserError(f"{cfg['model']} has no 3DTRL layer: the geometry evaluation needs a 3DTRL model")
    models = {"model": embedder, "random_init": random_twin(cfg, args.seed)}
    trajectories, views = open_split(args.geometry_eval, args.data, args.split, args.train_views)
    with_truth = geometry_eval.check_has_ground_truth([t.path for t in trajectories])
    trajectories = [t for t in trajectories if t.path in with_truth]
    names = view_folder_names(views)
    data = TrajectoryDataset(trajectories, cfg["img_size"], progress=progress, desc="decode")
    scores = geometry_eval.GeometryScores(args.seed)
    for k, traj in enumerate(tqdm(trajectories, desc="geometry", unit="traj", disable=not progress)):
        truth = load_ground_truth(traj.path, names)
        frames = data[k].numpy()
        recs = {name: recover(net, frames, args.batch_size, args.device) for name, net in models.items()}
        for name, rec in recs.items():
            scores.add(name, rec.depth, rec.rotation, rec.translation, truth, rec.patch_tokens)
            scores.add_reprojection(name, rec.points_world, rec.rotation, rec.translation, rec.patch_colours,
                                    rec.grid_size, layer_pinhole(models[name]))
        scores.add_references(truth)
        scores.add_reprojection_references(truth, recs["model"].patch_colours, recs["model"].grid_size)
        if k == 0:
            shown = (frames, truth, recs["model"])
    summary = scores.summary()
    summary.update(checkpoint=args.checkpoint, model_cfg=cfg, data=args.data, split=args.split,
                   trajectories=[t.name for t in trajectories], views=names,
                   files=["geometry.json", "geometry_depth.png", "geometry_cameras.png"])
    claim_output(args.out)
    write_geometry_figures(*shown, names, trajectories[0].name, args.out)
    write_json_atomic(summary, os.path.join(args.out, "geometry.json"))
    print(geometry_eval.format_table(summary))
    print(f"wrote {os.path.join(args.out, 'geometry.json')}")


def claim_output(out: str) -> None:
    """Write only into a new or empty ``--out``, or one holding this script's earlier output (its
    ``summary.json`` or ``geometry.json``): a folder of someone else's files (their own
    ``depth.png``, ``summary.json``) is refused, never overwritten."""
    ours = False
    for name in ("summary.json", "geometry.json"):
        path = os.path.join(out, name)
        if os.path.isfile(path):
            try:
                record = read_json(path)
            except UserError:
                record = None
            ours = ours or (isinstance(record, dict) and "model_cfg" in record and "files" in record)
    if os.path.isdir(out) and os.listdir(out) and not ours:
        raise UserError(f"{out} holds files visualize.py did not write; give a new or empty --out")
    prepare_output_dir(out)


def write_geometry_figures(frames: np.ndarray, truth: Dict[str, np.ndarray], rec: Recovered, names: Sequence[str],
                           trajectory: str, out: str) -> None:
    """geometry_depth.png (true depth of each token's patch beside the pseudo-depth) and
    geometry_cameras.png (true cameras beside the estimated ones) at the middle frame."""
    t = frames.shape[1] // 2
    instant = {key: truth[key][:, t:t + 1] for key in ("depth", "world_to_camera")}
    instant["intrinsics"] = truth["intrinsics"]
    true_depth = geometry_eval.token_depth(truth["depth"][:, t], rec.grid_size)
    true_depth = np.where(np.isfinite(true_depth), true_depth, np.nanmax(true_depth))
    rows = [("true depth (m)", true_depth, [plots.depth_limits(d) for d in true_depth]),
            ("pseudo-depth", rec.depth[:, t], [plots.depth_limits(d) for d in rec.depth[:, t]])]
    plots.save_png(plots.depth_rows_figure(plots.to_hwc(frames[:, t]), rows, names,
                                           f"{trajectory}, frame {t}: true depth per token patch\nvs 3DTRL's "
                                           f"pseudo-depth (low → high: dark → yellow)"),
                   os.path.join(out, "geometry_depth.png"))
    rotation, centre = geometry_eval.cameras_from_world_to_camera(truth["world_to_camera"][:, t])
    points = geometry_eval.token_world_points(instant, rec.grid_size)[:, 0]
    points = np.where(np.isfinite(points), points, centre[:, None])
    panels = [plots.cameras_figure(points, rotation, centre, true_depth.reshape(len(names), -1), rec.grid_size,
                                   names, (-60,), "true cameras and\ntoken positions"),
              plots.cameras_figure(rec.points_world[:, t], rec.rotation[:, t], rec.translation[:, t],
                                   rec.depth[:, t].reshape(len(names), -1), rec.grid_size, names, (-60,),
                                   "estimated by 3DTRL\n(own world frame and scale)")]
    plots.save_png(np.concatenate(panels, axis=1), os.path.join(out, "geometry_cameras.png"))


# ----------------------------------------------------------------------------- main

def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    check_args(args)
    progress = not args.xpar
    if args.geometry_eval:
        evaluate_geometry(args, progress)
        return
    source = open_source(args)
    instant = pick_instant(args, source.length)
    names = source.names
    embedder, cfg = load_embedder(args.checkpoint, args.model, args.img_size, args.seed)
    if not has_3dtrl(embedder):
        raise UserError(f"{cfg['model']} has no 3DTRL layer: give a 3DTRL model (the baseline goes to --baseline)")
    baseline = load_embedder(args.baseline, args.model, args.img_size, args.seed) if args.baseline else None
    sizes = {cfg["img_size"], args.display_size} | ({baseline[1]["img_size"]} if baseline else set())
    frames = {size: source.read(size) for size in sorted(sizes)}
    display = plots.to_hwc(frames[args.display_size])

    models = {args.label: recover(embedder, frames[cfg["img_size"]], args.batch_size, args.device, progress,
                                  args.label)}
    if baseline:
        models[args.baseline_label] = recover(baseline[0], frames[baseline[1]["img_size"]], args.batch_size,
                                              args.device, progress, args.baseline_label)
    rec = models[args.label]
    claim_output(args.out)
    written = write_depth(rec, display, names, instant, args.out, args.fps, progress)
    written += write_tokens(rec, names, instant, args.out, args.turn_frames, progress)
    written += write_cameras(rec, names, instant, args.out)
    summary = {"checkpoint": args.checkpoint, "baseline": args.baseline, "model_cfg": cfg, "views": list(names),
               "frames": int(display.shape[1]), "instant": instant, "grid_size": list(rec.grid_size)}
    if display.shape[1] > 1 and len(names) > 1:
        files, summary["alignment"] = write_alignment(models, display, names, args.out, args.fps, progress)
        written += files
    write_geometry(rec, names, args.out)
    written.append("geometry.npz")
    summary["files"] = written
    write_json_atomic(summary, os.path.join(args.out, "summary.json"))
    print(f"wrote {', '.join(written)}, summary.json to {args.out}")


if __name__ == "__main__":
    run_cli(main)
