"""One forward pass per batch: embeddings and the geometry 3DTRL recovered for every frame."""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from threedtrl.alignment.embedder import MODEL_DEFAULTS, Embedder, checkpoint_model_cfg, create_embedder, load_checkpoint
from threedtrl.alignment import metrics
from threedtrl.runtime import UserError, seed_everything


@dataclass
class Recovered:
    """What a model produced for frames ``(V, T, 3, S, S)``; geometry fields are None for a
    model without 3DTRL.

    embeddings: ``(V, T, D)``; depth: ``(V, T, h, w)`` pseudo-depth per token;
    points_world: ``(V, T, h*w, 3)``; rotation: ``(V, T, 3, 3)``; translation: ``(V, T, 3)``;
    patch_colours: ``(V, T, h*w, 3)`` mean RGB of each token's patch in [0, 1];
    patch_tokens: ``(V, T, h*w, D)`` the backbone's output tokens, where they lie on the layer's grid.
    """
    embeddings: np.ndarray
    depth: Optional[np.ndarray] = None
    points_world: Optional[np.ndarray] = None
    rotation: Optional[np.ndarray] = None
    translation: Optional[np.ndarray] = None
    patch_colours: Optional[np.ndarray] = None
    patch_tokens: Optional[np.ndarray] = None

    @property
    def has_geometry(self) -> bool:
        return self.depth is not None

    @property
    def grid_size(self) -> Tuple[int, int]:
        return tuple(self.depth.shape[-2:])


def load_embedder(checkpoint: Optional[str], model_name: str, img_size: int, seed: int
                  ) -> Tuple[Embedder, Dict]:
    """The network of an alignment checkpoint, or a randomly initialised ``model_name`` when
    ``checkpoint`` is None. Returns the embedder (eval mode) and its model config."""
    if checkpoint is None:
        cfg = dict(MODEL_DEFAULTS, model=model_name, img_size=img_size)
        seed_everything(seed)
        return create_embedder(cfg).eval(), cfg
    ckpt = load_checkpoint(checkpoint)
    cfg = checkpoint_model_cfg(ckpt, checkpoint)
    embedder = create_embedder(cfg)
    try:
        embedder.net.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise UserError(f"{checkpoint}: weights do not fit {cfg['model']}: {str(err).splitlines()[0]}") from None
    return embedder.eval(), cfg


def random_twin(cfg: Dict, seed: int) -> Embedder:
    """The model ``cfg`` describes, randomly initialised (seeded), in eval mode: the reference a
    trained model is compared with."""
    seed_everything(seed)
    return create_embedder(cfg).eval()


def has_3dtrl(embedder: Embedder) -> bool:
    return hasattr(embedder.net, "three_d_trl")


def patch_colours(images: torch.Tensor, grid_size: Tuple[int, int]) -> torch.Tensor:
    """uint8 ``(B, 3, S, S)`` -> ``(B, h*w, 3)`` mean colour of each token's patch, in [0, 1]."""
    pooled = F.adaptive_avg_pool2d(images.float() / 255.0, grid_size)
    return pooled.flatten(2).transpose(1, 2)


@torch.no_grad()
def recover(embedder: Embedder, frames: np.ndarray, batch_size: int = 32, device: str = "cpu",
            progress: bool = False, desc: str = "forward") -> Recovered:
    """Run ``embedder`` on every frame of uint8 ``frames (V, T, 3, S, S)``."""
    views, length = frames.shape[:2]
    flat = torch.from_numpy(frames).flatten(0, 1)
    embedder = embedder.to(device)
    parts: Dict[str, list] = {k: [] for k in ("embeddings", "depth", "points_world", "rotation", "translation",
                                              "patch_colours")}
    grid = None
    for start in tqdm(range(0, len(flat), batch_size), desc=desc, unit="batch", disable=not progress,
                      dynamic_ncols=True, leave=False):
        images = flat[start:start + batch_size].to(device)
        z, patches, geometry = embedder(images, with_geometry=True)
        parts["embeddings"].append(z.float().cpu())
        if geometry is None:
            continue
        if patches.shape[1] == geometry.depth.shape[-1]:  # output tokens on the layer's grid (ViT, TnT)
            parts.setdefault("patch_tokens", []).append(patches.float().cpu())
        grid = tuple(geometry.grid_size)
        parts["depth"].append(geometry.depth[:, 0].float().cpu())
        parts["points_world"].append(geometry.points_world[:, 0].float().cpu())
        parts["rotation"].append(geometry.rotation.float().cpu())
        parts["translation"].append(geometry.translation[:, 0].float().cpu())
        parts["patch_colours"].append(patch_colours(images, grid).cpu())
    out = {k: torch.cat(v).numpy() for k, v in parts.items() if v}
    shapes = {"embeddings": (-1,), "depth": grid, "points_world": (-1, 3), "rotation": (3, 3),
              "translation": (3,), "patch_colours": (-1, 3), "patch_tokens": (grid[0] * grid[1] if grid else 0, -1)}
    return Recovered(**{k: v.reshape(views, length, *shapes[k]) for k, v in out.items()})


def nearest_frames(z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
    """For every frame of ``z1 (l1, D)`` the index of its nearest frame in ``z2 (l2, D)``,
    as the alignment metrics count it (``alignment.metrics.nearest_frames``)."""
    return metrics.nearest_frames(z1, z2).numpy()