"""Initialise a TimeSformer from ImageNet ViT weights or from a TimeSformer checkpoint.

* ImageNet ViT (timm key names, e.g. ``blocks.3.attn.qkv.weight``): each block's ``attn`` and
  ``norm1`` are also copied into ``temporal_attn`` and ``temporal_norm1``; ``temporal_fc``,
  ``time_embed``, blocks beyond the file's depth and the 3DTRL layer keep their initialisation.
* TimeSformer checkpoint (a file holding ``model_state`` with ``model.`` keys).

In both cases the spatial position embedding is resampled to the model's token grid, the time
embedding interpolated to its frame count, and a classifier of another size is left out.
"""
import logging
import os
import re
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models import clean_state_dict

from threedtrl.runtime import UserError, load_checkpoint_file

from .model import TimeSformer

log = logging.getLogger(__name__)
HEAD_KEYS = ("model.head.weight", "model.head.bias")


def imagenet_to_timesformer(state: Dict[str, torch.Tensor], model: TimeSformer) -> Dict[str, torch.Tensor]:
    """Rename timm ViT keys to ``model.*`` and add the temporal copies of ``attn`` / ``norm1``."""
    divided = model.model.attention_type == "divided_space_time"
    out = {}
    for key, value in clean_state_dict(state).items():
        out[f"model.{key}"] = value
        match = re.match(r"blocks\.(\d+)\.(attn|norm1)\.(.*)", key)
        if divided and match:
            block, name, rest = match.groups()
            out[f"model.blocks.{block}.temporal_{name}.{rest}"] = value.clone()
    return out


def adapt_embeddings(state: Dict[str, torch.Tensor], model: TimeSformer) -> Dict[str, torch.Tensor]:
    """Resample ``pos_embed`` to the model's grid and interpolate ``time_embed`` to its frame count."""
    net = model.model
    pos = state.get("model.pos_embed")
    if pos is not None and pos.shape != net.pos_embed.shape:
        old = int(round((pos.shape[1] - 1) ** 0.5))
        if old * old != pos.shape[1] - 1:
            raise UserError(f"cannot resample pos_embed of shape {tuple(pos.shape)}: not a square grid")
        state["model.pos_embed"] = resample_abs_pos_embed(pos, list(net.grid_size), [old, old], num_prefix_tokens=1)
    time = state.get("model.time_embed")
    if time is not None and hasattr(net, "time_embed") and time.shape != net.time_embed.shape:
        state["model.time_embed"] = F.interpolate(time.transpose(1, 2), size=net.time_embed.shape[1],
                                                  mode="nearest").transpose(1, 2)
    return state


def load_state(model: TimeSformer, state: Dict[str, torch.Tensor], source: str) -> Tuple[List[str], List[str]]:
    """Load the keys of ``state`` the model has (new-sized head left out); returns (missing, unexpected)."""
    own = model.state_dict()
    # the 3DTRL grid coordinates are fixed functions of the token grid: the model keeps its own
    state = {k: v for k, v in state.items() if not k.endswith(("estimator.u", "estimator.v"))}
    state = adapt_embeddings(state, model)
    for key in HEAD_KEYS:
        if key in state and key in own and state[key].shape != own[key].shape:
            state.pop(key)
    for key, value in state.items():
        if key in own and value.shape != own[key].shape:
            raise UserError(f"{source}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}")
    unexpected = sorted(k for k in state if k not in own)
    state = {k: v for k, v in state.items() if k in own}
    if not state:
        raise UserError(f"{source}: none of its {len(unexpected)} tensors has a name of this model's weights")
    missing = sorted(model.load_state_dict(state, strict=False).missing_keys)
    log.info("loaded %s: %d tensors, %d left at init, %d ignored", source, len(state), len(missing), len(unexpected))
    return missing, unexpected


def _state_dict_of(obj, path: str) -> Dict[str, torch.Tensor]:
    for key in ("model_state", "model", "state_dict", "model_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return obj[key]
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise UserError(f"{path} holds no state dict")


def load_pretrained(model: TimeSformer, path: str) -> Tuple[List[str], List[str]]:
    """Initialise from ``path``: a TimeSformer checkpoint (``model_state``) or ImageNet ViT weights."""
    obj = load_checkpoint_file(path)
    state = _state_dict_of(obj, path)
    if not (isinstance(obj, dict) and "model_state" in obj) and not any(k.startswith("model.") for k in state):
        state = imagenet_to_timesformer(state, model)
    else:
        state = clean_state_dict(state)
    return load_state(model, state, os.path.basename(path))
