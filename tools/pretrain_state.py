"""Pretrain an alignment backbone offline: regress the scene's state from single rendered frames.

The FTPV renderer stores, for every frame, the arm's joint angles and finger opening and the
cube's position (``ground_truth.npz``). They are the same in every camera, so a backbone that
predicts them from any one view has features that follow the arm and ignore the viewpoint: a
start point for ``multiview_video_alignment.py --init``, made by the project itself (the release
fine-tuned ImageNet weights instead). The first-person view and the first ``--train_views``
third-person views are used. With fixed cameras, keep the alignment task's unseen ones out
(6 of 9); with ``render_ftpv.py --random_cameras`` every trajectory has cameras of its own, none of
them the alignment set's, and all 9 may be used. The trajectories should be rendered with
another seed than the alignment data.

``--align_weight W`` adds the alignment script's multi-view n-pairs loss (``--loss npairs``) on
clips of every loaded view of one trajectory at a time, weighted by W: with random cameras it
teaches the embedding to match the same instant across many viewpoints, which the alignment
task's unseen cameras need. ``--init FILE`` continues from an earlier output of this tool (its
backbone and head), e.g. a second, shorter stage with the alignment term. Every epoch reports
the held-out state MSE and the held-out alignment error (mean over ordered view pairs).

``--geometry_loss OBJECTIVE ...`` adds the alignment script's objectives on what 3DTRL recovers
(``consistency``, ``equivariance``, ``oracle``; docs/geometry.md) on the same clips of every view of
one trajectory, and ``--depth_activation``, ``--focal``, ``--learn_focal`` set the layer's geometry
options (recorded in the output's ``model_cfg``): a start point whose cameras have seen many
viewpoints, which the alignment task's few fixed cameras cannot give.

    python data_pipeline/render_ftpv.py --out data/ftpv_pretrain --preset demo --trajectories 100 \
        --seed 1 --workers 2
    python tools/pretrain_state.py --data_root data/ftpv_pretrain --model vit_3dtrl --out weights/state_vit_3dtrl.pth

The output holds ``model`` (the backbone's state dict, what ``--init`` loads), ``head`` (the
regression head, a linear map from the pooled embedding to the 11 standardised state values),
``model_cfg``, the state's mean and standard deviation, and the per-epoch
history (train and held-out MSE in standard units). Progress on stdout, TensorBoard and JSON
beside the weights; ``--resume`` continues from ``OUT.last``.
"""
import argparse
import dataclasses
import os
import time
from typing import Dict, List, Optional, Tuple

import threedtrl.runtime.compat  # noqa: F401  (the torchvision remedy, before the first timm/torchvision import)
import numpy as np
import torch
from torch import nn

from threedtrl.alignment.embedder import MODEL_ALIASES, MODEL_DEFAULTS, create_embedder, init_from_file
from threedtrl.alignment.engine import geometry_terms
from threedtrl.alignment.geometry_objectives import add_geometry_arguments, check_geometry_args
from threedtrl.alignment.losses import npairs_loss
from threedtrl.alignment.metrics import alignment_error
from data_pipeline import DATASETS, TrajectoryDataset
from data_pipeline.ftpv import Trajectory, numbered_trajectories, open_trajectory
from data_pipeline.ground_truth import TokenTargets
from data_pipeline.render_ftpv import GROUND_TRUTH
from threedtrl.runtime import (OutputLayout, UserError, check_finite_loss, check_finite_weights, load_checkpoint_file,
                               progress_bar, run_cli, save_checkpoint_atomic, save_safetensors_atomic, seed_everything,
                               write_json_atomic)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_root", required=True, nargs="+",
                   help="FTPV roots rendered by data_pipeline/render_ftpv.py (any --family; the same frames and "
                        "views in each); every root has a head of its own state")
    p.add_argument("--data", default="panda", choices=["panda"], help="data set folder under the root")
    p.add_argument("--train_views", type=int, default=6, help="third-person views used (the first K)")
    p.add_argument("--model", default="vit_3dtrl", help="timm name or short name, as in the alignment script")
    p.add_argument("--img_size", type=int, default=64)
    p.add_argument("--patch_size", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--trl_depth", type=int, default=1)
    p.add_argument("--global_pool", default="avg")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--align_weight", type=float, default=0.0,
                   help="weight of the multi-view n-pairs term (0: state regression alone)")
    p.add_argument("--align_clips", type=int, default=1, help="trajectory clips of the n-pairs term per step")
    p.add_argument("--align_frames", type=int, default=10, help="instants per clip of the n-pairs term")
    p.add_argument("--temperature", type=float, default=0.1, help="n-pairs softmax temperature")
    p.add_argument("--init", default=None, metavar="FILE", help="start from an earlier output of this tool")
    p.add_argument("--held_out", type=int, default=10,
                   help="trajectories of each root kept out of training (its last ones), to measure it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True,
                   help="weights file to write: .pth (backbone, regression head, state statistics) or "
                        ".safetensors (the backbone and its model_cfg, tensors only)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.last")
    p.add_argument("--xpar", action="store_true", help="no progress bars")
    add_geometry_arguments(p)
    args = p.parse_args(argv)
    args.model = MODEL_ALIASES.get(args.model, args.model)
    check_geometry_args(args)
    if os.path.exists(args.out):
        raise UserError(f"{args.out} exists: choose another --out")
    if args.resume and not os.path.isfile(args.out + ".last"):
        raise UserError(f"nothing to resume: {args.out}.last is missing")
    if args.init and not os.path.isfile(args.init):
        raise UserError(f"--init file {args.init} is missing")
    if args.align_weight < 0:
        raise UserError(f"--align_weight must not be negative, got {args.align_weight}")
    for name in ("train_views", "img_size", "epochs", "batch_size", "align_clips", "align_frames"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be positive, got {getattr(args, name)}")
    return args


def load_states(dataset_dir: str, names: List[str]) -> np.ndarray:
    """``(N, T, D)`` float32 scene state per frame: the Panda's arm joints and finger (8) and cube
    position (3), or a scene family's ``state``."""
    states = []
    for name in names:
        path = os.path.join(dataset_dir, name, GROUND_TRUTH)
        if not os.path.isfile(path):
            raise UserError(f"{path} is missing: render the data with this project's renderer")
        with np.load(path, allow_pickle=False) as truth:
            if "arm_state" in truth:
                states.append(np.concatenate([truth["arm_state"], truth["cube_position"]], axis=1))
            elif "state" in truth:
                states.append(truth["state"])
            else:
                raise UserError(f"{path} holds no scene state: render the data again with this version")
    return np.stack(states).astype(np.float32)


def open_root(args, root: str) -> Tuple[torch.Tensor, np.ndarray, List[Trajectory]]:
    """Frames ``(N, V, T, 3, S, S)`` uint8 of every trajectory of one root, their states ``(N, T, D)``
    and the trajectories."""
    dataset_dir = os.path.join(root, DATASETS[args.data].folder)
    names = numbered_trajectories(dataset_dir) if os.path.isdir(dataset_dir) else []
    if len(names) <= args.held_out:
        raise UserError(f"{dataset_dir} holds {len(names)} trajectories; --held_out {args.held_out} leaves none")
    trajectories = [open_trajectory(dataset_dir, name, range(args.train_views)) for name in names]
    data = TrajectoryDataset(trajectories, args.img_size, progress=not args.xpar, desc="decode")
    return torch.stack([data[k] for k in range(len(data))]), load_states(dataset_dir, names), trajectories


def open_frames(args) -> Tuple[torch.Tensor, np.ndarray, np.ndarray, List[Trajectory]]:
    """Every root's training trajectories, then every root's last ``--held_out``: frames
    ``(N, V, T, 3, S, S)`` uint8, states ``(N, T, D)`` with each root's state in a block of its own
    (D the sum of the roots' state sizes, zeros elsewhere), which of them are a trajectory's own,
    ``(N, D)`` bool, and the N trajectories in the same order."""
    roots = [open_root(args, root) for root in args.data_root]
    shapes = {tuple(frames.shape[1:]) for frames, _, _ in roots}
    if len(shapes) > 1:
        raise UserError(f"the --data_root folders differ in views, frames or size ({sorted(shapes)}): render them alike")
    sizes = [states.shape[2] for _, states, _ in roots]
    offsets = np.cumsum([0] + sizes)
    padded, masks = [], []
    for (_, states, _), start, stop in zip(roots, offsets[:-1], offsets[1:]):
        block = np.zeros(states.shape[:2] + (offsets[-1],), dtype=np.float32)
        block[:, :, start:stop] = states
        mask = np.zeros((len(states), offsets[-1]), dtype=bool)
        mask[:, start:stop] = True
        padded.append(block)
        masks.append(mask)
    per_root = [(frames, block, mask, trajectories, len(frames) - args.held_out)
                for (frames, _, trajectories), block, mask in zip(roots, padded, masks)]
    parts = ([(f[:cut], b[:cut], m[:cut], t[:cut]) for f, b, m, t, cut in per_root]
             + [(f[cut:], b[cut:], m[cut:], t[cut:]) for f, b, m, t, cut in per_root])
    return (torch.cat([f for f, _, _, _ in parts]), np.concatenate([b for _, b, _, _ in parts]),
            np.concatenate([m for _, _, m, _ in parts]), [t for _, _, _, part in parts for t in part])


class StateRegressor(nn.Module):
    """Embedder (the alignment script's, unnormalised) + a linear head: frames ``(B, 3, S, S)`` -> ``(B, 11)``."""

    def __init__(self, cfg: Dict, outputs: int):
        super().__init__()
        self.embedder = create_embedder(cfg)
        self.head = nn.Linear(self.embedder.net.num_features, outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedder(images))


def masked_squared_error(predicted: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of squared errors over the entries ``mask`` selects: each row's own state."""
    return (((predicted - targets) ** 2) * mask).sum()


def masked_mse(predicted: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked_squared_error(predicted, targets, mask) / mask.sum()


def mse(model: StateRegressor, frames: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, batch: int) -> float:
    model.eval()
    with torch.no_grad():
        total = sum(masked_squared_error(model(frames[i:i + batch]), targets[i:i + batch], mask[i:i + batch]).item()
                    for i in range(0, len(frames), batch))
    model.train()
    return total / mask.sum().item()


def held_out_alignment_error(model: StateRegressor, frames: torch.Tensor) -> float:
    """Mean alignment error over the held-out trajectories ``frames (N, V, T, 3, S, S)`` and their
    ordered view pairs: every frame matched to its nearest frame of the other view by the pooled
    embedding (unnormalised, as this tool trains it), the alignment test's metric."""
    model.eval()
    errors = []
    with torch.no_grad():
        for trajectory in frames:
            z = model.embedder(trajectory.flatten(0, 1)).unflatten(0, trajectory.shape[:2])   # (V, T, D)
            errors += [alignment_error(z[v], z[w]) for v in range(len(z)) for w in range(len(z)) if v != w]
    model.train()
    return float(np.mean(errors))


def sample_clips(frames: torch.Tensor, trajectories: int, clips: int, length: int,
                 generator: torch.Generator) -> Tuple[torch.Tensor, List[int], List[List[int]]]:
    """``(C, V, L, 3, S, S)``: ``clips`` random training trajectories of ``frames (N, V, T, 3, S, S)``
    (the first ``trajectories``), each at ``length`` random instants in time order, every view; and
    which trajectories and instants they are."""
    picked = torch.randint(trajectories, (clips,), generator=generator).tolist()
    times = [torch.randperm(frames.shape[2], generator=generator)[:length].sort().values.tolist()
             for _ in range(clips)]
    return torch.stack([frames[i][:, t] for i, t in zip(picked, times)]), picked, times


def clip_targets(targets: TokenTargets, picked: List[int], times: List[List[int]], views: int
                 ) -> Dict[str, torch.Tensor]:
    """The oracle's ``depth (C, V, L, N)`` and ``rotation (C, V, L, 3, 3)`` of the sampled clips."""
    per_clip = [targets(i, range(views), t) for i, t in zip(picked, times)]
    return {key: torch.from_numpy(np.stack([c[key] for c in per_clip])) for key in ("depth", "rotation")}


def clip_losses(model: StateRegressor, clips: torch.Tensor, targets: Optional[Dict[str, torch.Tensor]],
                args: argparse.Namespace) -> Dict[str, torch.Tensor]:
    """The terms on ``clips (C, V, L, 3, S, S)``: ``npairs`` (on L2-normalised pooled embeddings, with
    ``--align_weight``) and each ``--geometry_loss`` objective, from one forward pass."""
    if args.geometry_loss:
        z, terms = geometry_terms(model.embedder, clips, targets, args)
    else:
        z, terms = model.embedder(clips.flatten(0, 2)).unflatten(0, clips.shape[:3]), {}
    if args.align_weight > 0:
        terms["npairs"] = npairs_loss(nn.functional.normalize(z, dim=-1), args.temperature)
    return terms


def init_regressor(model: StateRegressor, path: str) -> Dict:
    """Load an earlier output of this tool: the backbone (as ``--init`` of the alignment script) and the head."""
    report = init_from_file(model.embedder.net, path)
    head = load_checkpoint_file(path, "--init file").get("head")
    if isinstance(head, dict):
        model.head.load_state_dict(head)
    return report


@dataclasses.dataclass
class StateData:
    """The frames and standardised state targets of every loaded trajectory, the held-out ones last."""
    frames: torch.Tensor       # (N, V, T, 3, S, S)
    targets: torch.Tensor      # (N V T, D) standardised state, zero where the row's root lacks the entry
    mask: torch.Tensor         # (N V T, D) 1 where the entry is the row's own root's state
    mean: torch.Tensor         # (D,) state mean over the training rows
    std: torch.Tensor          # (D,) state standard deviation over the training rows
    train_trajectories: int    # the first ones are trained on
    trajectories: List[Trajectory]

    @property
    def flat_frames(self) -> torch.Tensor:   # (N V T, 3, S, S), the rows of ``targets``
        return self.frames.flatten(0, 2)

    @property
    def train_rows(self) -> int:
        return self.train_trajectories * self.frames.shape[1] * self.frames.shape[2]


def load_state_data(args: argparse.Namespace) -> StateData:
    """Open ``--data_root``(s) and standardise each state entry over the training rows that have it."""
    frames, states, own, trajectories = open_frames(args)
    n, views, length = frames.shape[:3]
    flat_states = torch.from_numpy(np.repeat(states[:, None], views, axis=1).reshape(n * views * length, -1))
    mask = torch.from_numpy(np.repeat(own, views * length, axis=0)).float()    # (N V T, D)
    train_trajectories = n - args.held_out * len(args.data_root)
    train_rows = train_trajectories * views * length
    train_mask, count = mask[:train_rows], mask[:train_rows].sum(0).clamp_min(1.0)
    mean = (flat_states[:train_rows] * train_mask).sum(0) / count
    std = ((((flat_states[:train_rows] - mean) ** 2) * train_mask).sum(0) / (count - 1).clamp_min(1.0)).sqrt()
    std = std.clamp_min(1e-6)
    return StateData(frames, (flat_states - mean) / std * mask, mask, mean, std, train_trajectories, trajectories)


def held_out_metrics(model: StateRegressor, data: StateData) -> Dict[str, float]:
    rows = data.train_rows
    return {"held_out_mse": mse(model, data.flat_frames[rows:], data.targets[rows:], data.mask[rows:], 256),
            "held_out_alignment_error": held_out_alignment_error(model, data.frames[data.train_trajectories:])}


def train_one_epoch(model: StateRegressor, data: StateData, optimizer, scheduler,
                    token_targets: Optional[TokenTargets], args: argparse.Namespace, epoch: int) -> Dict[str, float]:
    """Epoch ``epoch`` (from 1): state regression on shuffled training frames, and per step one draw of
    clips for the n-pairs and geometry terms where asked; returns the epoch's mean training terms."""
    generator = torch.Generator().manual_seed(args.seed * 1000 + epoch - 1)
    train_rows, views = data.train_rows, data.frames.shape[1]
    order = torch.randperm(train_rows, generator=generator)
    flat_frames = data.flat_frames
    use_clips = args.align_weight > 0 or bool(args.geometry_loss)
    total, clip_totals = 0.0, {}
    for i in progress_bar(range(0, train_rows, args.batch_size), desc=f"epoch {epoch}", enabled=not args.xpar):
        rows = order[i:i + args.batch_size]
        loss = masked_mse(model(flat_frames[rows]), data.targets[rows], data.mask[rows])
        total += loss.item() * len(rows)
        if use_clips:
            clips, picked, times = sample_clips(data.frames, data.train_trajectories, args.align_clips,
                                                args.align_frames, generator)
            truth = clip_targets(token_targets, picked, times, views) if token_targets else None
            for name, term in clip_losses(model, clips, truth, args).items():
                clip_totals[name] = clip_totals.get(name, 0.0) + term.item() * len(rows)
                loss = loss + (args.align_weight if name == "npairs" else args.geometry_weight) * term
        check_finite_loss(loss, f"epoch {epoch}, step {i // args.batch_size + 1}", "lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    check_finite_weights(model, f"after epoch {epoch}")
    return {"train_mse": total / train_rows, **{f"train_{name}": value / train_rows for name, value in clip_totals.items()}}


def save_outputs(args: argparse.Namespace, model: StateRegressor, cfg: Dict, data: StateData, history: List[Dict],
                 init_report: Optional[Dict]) -> None:
    """The weights (``--out``: a checkpoint, or with ``.safetensors`` the backbone's tensors alone,
    which ``--init`` loads) and ``--out.json`` with the history."""
    if args.out.endswith(".safetensors"):
        save_safetensors_atomic(model.embedder.net.state_dict(), {"model_cfg": cfg, "history": history,
                                                                   "args": vars(args)}, args.out)
    else:
        save_checkpoint_atomic({"model": model.embedder.net.state_dict(), "model_cfg": cfg,
                                "head": model.head.state_dict(), "state_mean": data.mean, "state_std": data.std,
                                "history": history, "args": vars(args), "init": init_report}, args.out)
    write_json_atomic({"history": history, "args": vars(args), "init": init_report}, args.out + ".json")


def main(argv=None) -> None:
    args = parse_args(argv)
    data = load_state_data(args)
    n, views, length = data.frames.shape[:3]
    cfg = dict(MODEL_DEFAULTS, model=args.model, img_size=args.img_size, patch_size=args.patch_size,
               depth=args.depth, trl_depth=args.trl_depth, global_pool=args.global_pool,
               trl_geometry=args.trl_geometry)
    seed_everything(args.seed)
    model = StateRegressor(cfg, data.targets.shape[1])
    token_targets = (TokenTargets(data.trajectories, model.embedder.net.patch_embed.grid_size)
                     if "oracle" in args.geometry_loss else None)
    init_report = init_regressor(model, args.init) if args.init and not args.resume else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs,
                                                    steps_per_epoch=-(-data.train_rows // args.batch_size),
                                                    pct_start=0.1)
    last = args.out + ".last"
    history, start = [], 0
    if args.resume:
        state = load_checkpoint_file(last, "--resume checkpoint")
        model.load_state_dict(state["regressor"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start, init_report = state["history"], state["epoch"], state.get("init")
    layout = OutputLayout(os.path.dirname(os.path.abspath(args.out)), tensorboard=os.path.basename(args.out) + ".tb")
    writer = layout.prepare().tensorboard_writer()
    print(f"{n} trajectories ({n - data.train_trajectories} held out) x {views} views x {length} frames; "
          f"{args.model}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters", flush=True)
    if not history:
        history.append({"epoch": 0, **held_out_metrics(model, data)})
        print(f"epoch 0 (before training): held-out mse {history[0]['held_out_mse']:.4f}  alignment error "
              f"{history[0]['held_out_alignment_error']:.3f}", flush=True)
    for epoch in range(start + 1, args.epochs + 1):
        tic = time.perf_counter()
        terms = train_one_epoch(model, data, optimizer, scheduler, token_targets, args, epoch)
        record = {"epoch": epoch, "train_mse": terms["train_mse"], **held_out_metrics(model, data),
                  "seconds": time.perf_counter() - tic, **terms}
        history.append(record)
        for key, value in record.items():
            if key.startswith(("train_", "held_out_")):
                writer.add_scalar(key, value, epoch)
        print(f"epoch {epoch}: train mse {record['train_mse']:.4f}"
              + "".join(f"  {key[6:]} {value:.3f}" for key, value in terms.items() if key != "train_mse")
              + f"  held-out mse {record['held_out_mse']:.4f}  alignment error "
              f"{record['held_out_alignment_error']:.3f}  [{record['seconds']:.0f}s]", flush=True)
        save_checkpoint_atomic({"regressor": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(), "history": history, "epoch": epoch,
                                "init": init_report}, last)
    writer.close()
    save_outputs(args, model, cfg, data, history, init_report)
    os.remove(last)
    print(f"weights: {args.out}")


if __name__ == "__main__":
    run_cli(main)
