"""The alignment embedder: a timm model (with or without 3DTRL) that maps frames to one vector each,
and the checkpoints of the alignment script."""
from typing import Dict, Optional, Sequence, Tuple

import timm
import torch
import torch.nn.functional as F
from timm.models import group_parameters
from torch import nn

import model
from data_pipeline import IMAGENET_MEAN, IMAGENET_STD, normalize
from threedtrl.runtime import UserError, load_checkpoint_file

# What a checkpoint needs to rebuild its model, with the values of checkpoints written before a key existed
# (a mean/std of None: the model's own, which those checkpoints were trained with).
MODEL_DEFAULTS = {"model": None, "img_size": None, "pred_depth": 1, "pred_campos_from": "both-sep",
                  "patch_size": 0, "depth": 0, "trl_depth": 0, "global_pool": "", "normalize_embedding": False,
                  "mean": None, "std": None, "center_in_time": False, "trl_geometry": None}
# The README's and the release's short names.
MODEL_ALIASES = {"vit_3dtrl": "vit_3dtrl_tiny_patch16_224", "vitnpl_tiny_patch16_224": "vit_3dtrl_tiny_patch16_224",
                 "deit_tcn": "vit_plain_tiny_patch16_224", "vit": "vit_plain_tiny_patch16_224"}


def center_in_time(z: torch.Tensor, unit: bool) -> torch.Tensor:
    """``(..., T, D)`` embeddings of T instants of one video, minus their mean over the instants
    (L2-normalised again when ``unit``): what every frame of a view shares (its background, seen from
    its camera) is taken out, and what changes over time is left to align."""
    z = z - z.mean(dim=-2, keepdim=True)
    return F.normalize(z, dim=-1) if unit else z


class Embedder(nn.Module):
    """uint8 frames ``(B, 3, H, W)`` -> embeddings ``(B, D)``: normalisation, backbone, pooled token
    (L2-normalised when ``unit`` is set, as the n-pairs loss trains it). With ``center``, the
    embeddings of a video are centred in time (:meth:`video_embeddings`) before they are compared."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], unit: bool = False,
                 center: bool = False):
        super().__init__()
        self.net = net
        self.mean, self.std = tuple(mean), tuple(std)
        self.unit, self.center = unit, center

    def forward(self, images: torch.Tensor, with_geometry: bool = False):
        """``(B, D)`` embeddings; with ``with_geometry`` also the patch tokens the backbone puts out
        ``(B, N, D)`` and what its 3DTRL layer recovers (:class:`backbone.TokenGeometry`), from the same
        pass (the geometric objectives)."""
        x = normalize(images, self.mean, self.std)
        if not with_geometry:
            z = model.embed(self.net, x)
            return F.normalize(z, dim=-1) if self.unit else z
        tokens, geometry = self.net.forward_features(x, return_geometry=True)
        z = self.net.forward_head(tokens, pre_logits=True)
        patches = tokens[:, getattr(self.net, "num_prefix_tokens", 1):] if tokens.ndim == 3 else tokens.flatten(1, 2)
        return (F.normalize(z, dim=-1) if self.unit else z), patches, geometry

    def video_embeddings(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., T, D)`` frame embeddings of videos -> what alignment compares."""
        return center_in_time(z, self.unit) if self.center else z


def check_model_name(name: str) -> None:
    if not timm.is_model(name):
        raise UserError(f"unknown model {name!r}: not a timm or 3DTRL model name")


def create_embedder(cfg: Dict) -> Embedder:
    """Build ``cfg["model"]`` (any timm name) without a classifier at ``cfg["img_size"]``, with the
    patch size, depth and 3DTRL position of ``cfg`` where they are set (non-zero)."""
    kwargs = dict(num_classes=0, img_size=cfg["img_size"])
    kwargs.update({key: cfg[key] for key in ("patch_size", "depth", "global_pool") if cfg.get(key)})
    if cfg["model"] in model.TRL_MODEL_NAMES:
        kwargs["pred_depth"] = bool(cfg["pred_depth"])
        if cfg.get("pred_campos_from"):  # else the model's: both-sep for ViT and TnT, tok for Swin (no CLS)
            kwargs["pred_campos_from"] = cfg["pred_campos_from"]
        if cfg.get("trl_depth"):
            kwargs["trl_depth"] = cfg["trl_depth"]
        if cfg.get("trl_geometry"):  # the layer's geometry options (backbone.PointEstimator)
            kwargs["trl_geometry"] = dict(cfg["trl_geometry"])
    check_model_name(cfg["model"])
    try:
        net = timm.create_model(cfg["model"], pretrained=cfg.get("pretrained", False), **kwargs)
    except (OSError, RuntimeError) as err:
        if cfg.get("pretrained"):
            raise UserError(f"pretrained weights for {cfg['model']} are not available locally: "
                            f"{str(err).splitlines()[0]}") from None
        raise
    except (TypeError, ValueError, AssertionError) as err:
        raise UserError(f"cannot build {cfg['model']} with {kwargs}: {str(err).splitlines()[0]}") from None
    try:
        model.check_input_size(net, cfg["img_size"])
    except ValueError as err:
        raise UserError(f"--img_size: {err}") from None
    data_cfg = net.pretrained_cfg or {}
    return Embedder(net, cfg.get("mean") or data_cfg.get("mean", IMAGENET_MEAN),
                    cfg.get("std") or data_cfg.get("std", IMAGENET_STD), unit=bool(cfg.get("normalize_embedding")),
                    center=bool(cfg.get("center_in_time")))


def freeze_first_groups(net: nn.Module, groups: int) -> int:
    """Stop training the first ``groups`` of timm's coarse parameter groups of ``net`` (group 0: the
    stem; then block by block, 3DTRL in the group of the block it feeds and the final norm in the last
    block's); returns the number of frozen tensors. Fine-tuning then moves only the later blocks."""
    if groups == 0:
        return 0
    grouped = group_parameters(net, net.group_matcher(coarse=True))
    if groups >= len(grouped):
        raise UserError(f"--freeze_groups {groups}: {type(net).__name__} has {len(grouped)} parameter groups "
                        f"(the stem, then one per block), so at most {len(grouped) - 1} can be frozen")
    names = {name for group_id in sorted(grouped)[:groups] for name in grouped[group_id]}
    for name, parameter in net.named_parameters():
        if name in names:
            parameter.requires_grad_(False)
    return len(names)


def recorded_normalisation(path: str) -> Optional[Tuple[Optional[list], Optional[list]]]:
    """The input mean and std a weight file was trained with, where it says: ``(mean, std)`` from a
    checkpoint of this project's alignment, state pretraining or ImageNet training (``(None, None)``
    where it was trained with the model's own); ``None`` for a file that records nothing (a bare
    state dict or timm file)."""
    ckpt = load_checkpoint_file(path, "--init file")
    if not isinstance(ckpt, dict):
        return None
    if isinstance(ckpt.get("model_cfg"), dict):
        return ckpt["model_cfg"].get("mean"), ckpt["model_cfg"].get("std")
    stored = ckpt.get("args")
    stored = vars(stored) if hasattr(stored, "__dict__") else stored
    if isinstance(stored, dict) and isinstance(ckpt.get("state_dict"), dict):
        return stored.get("mean"), stored.get("std")
    return None


def load_checkpoint(path: str) -> dict:
    """A checkpoint of this script (tensors and plain data only: nothing in the file can run code)."""
    ckpt = load_checkpoint_file(path)
    if not isinstance(ckpt, dict):
        raise UserError(f"{path} is not a checkpoint of multiview_video_alignment.py")
    return ckpt


def init_from_file(net: nn.Module, path: str) -> Dict:
    """Load the backbone weights of ``path`` into ``net`` (see ``--init``); returns what was loaded,
    left at initialisation and ignored."""
    ckpt = load_checkpoint_file(path, "--init file")
    state = ckpt
    for key in ("state_dict", "model", "model_state"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            state = ckpt[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"--init {path} holds no state dict")
    own = net.state_dict()
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        from timm.layers import resample_abs_pos_embed
        prefix = 0 if getattr(net, "no_embed_class", False) else getattr(net, "num_prefix_tokens", 1)
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=net.patch_embed.grid_size,
                                                    num_prefix_tokens=prefix)
    ignored = sorted(k for k, v in state.items() if k not in own or v.shape != own[k].shape)
    state = {k: v for k, v in state.items() if k not in ignored}
    if not state:
        raise UserError(f"--init {path}: none of its tensors fits {type(net).__name__} (same --model, --depth, "
                        f"--patch_size?)")
    left = sorted(net.load_state_dict(state, strict=False).missing_keys)
    left = [k for k in left if not k.endswith(("estimator.u", "estimator.v"))]
    return {"file": path, "loaded": len(state), "left_at_init": left, "ignored": ignored}


def checkpoint_model_cfg(ckpt: dict, path: str) -> Dict:
    """The model config stored in a checkpoint of this script (older ones lack the newer keys)."""
    cfg = ckpt.get("model_cfg") if isinstance(ckpt, dict) else None
    if not isinstance(cfg, dict) or "model" not in cfg or not isinstance(ckpt.get("model"), dict):
        raise UserError(f"{path} is not a checkpoint of multiview_video_alignment.py (no model and model_cfg)")
    return {key: cfg.get(key, default) for key, default in MODEL_DEFAULTS.items()}
