"""Shared building blocks of the 3DTRL model families: pretrained configs, building, feature outputs."""
import logging
import sys
from functools import partial
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from timm.models import build_model_with_cfg, clean_state_dict, get_pretrained_cfg

from threedtrl.runtime import UserError, load_checkpoint_file

from .three_d_trl import ThreeDTRL, trl_kwargs

_logger = logging.getLogger(__name__)
_DERIVED_BUFFERS = ("estimator.u", "estimator.v")


def derived_cfg(base_variant: str, **overrides) -> dict:
    """Default pretrained config of a 3DTRL model, taken from the timm model it extends.

    Input size, mean/std, crop, interpolation, ``first_conv`` and ``classifier`` are the
    base model's; ``hf_hub_id`` points at the base weights so ``pretrained=True`` loads the
    backbone from a local Hugging Face cache (or ``pretrained_cfg_overlay=dict(file=...)``).
    """
    cfg = get_pretrained_cfg(base_variant).to_dict()
    for field in ("architecture", "tag", "url", "file", "state_dict"):
        cfg.pop(field, None)
    cfg.update(custom_load=False, **overrides)
    return cfg


def _filter_and_report(filter_fn: Callable, state_dict: dict, model: torch.nn.Module) -> dict:
    state_dict = filter_fn(state_dict, model)
    new_keys = [k for k in model.state_dict() if k not in state_dict and not k.endswith(_DERIVED_BUFFERS)]
    if new_keys:
        _logger.warning("Pretrained backbone weights loaded; %d keys not in them keep their initialisation: %s",
                        len(new_keys), ", ".join(new_keys))
    return state_dict


def _pretrained_file(kwargs: dict) -> str:
    """The weight file named by ``pretrained_cfg_overlay=dict(file=...)`` (or ``pretrained_cfg``), if any."""
    for key in ("pretrained_cfg_overlay", "pretrained_cfg"):
        cfg = kwargs.get(key)
        file = cfg.get("file") if isinstance(cfg, dict) else getattr(cfg, "file", None)
        if file:
            return file
    return ""


def build_3dtrl_model(model_cls: type, variant: str, pretrained: bool, filter_fn: Callable,
                      default_out_indices, **kwargs):
    """Build a 3DTRL model with timm's builder; pretrained weights load the backbone part.

    A weight file given as ``pretrained_cfg_overlay=dict(file=F)`` is read by :func:`load_weights`
    (so a release or project checkpoint gives its EMA weights, every 3DTRL key and the release's
    layout conversions, read without running code). ``features_only`` models use the model's own
    ``forward_intermediates``, so 3DTRL is on their path too.
    """
    trl = trl_kwargs(kwargs)
    out_indices = kwargs.pop("out_indices", default_out_indices)
    file = _pretrained_file(kwargs) if pretrained else ""
    model = build_model_with_cfg(
        model_cls, variant, pretrained and not file,
        pretrained_filter_fn=partial(_filter_and_report, filter_fn),
        pretrained_strict=False,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **trl, **kwargs,
    )
    if file:
        load_weights(model, file)
    return model


def checkpoint_filter(net: torch.nn.Module) -> Optional[Callable]:
    """The timm ``checkpoint_filter_fn`` of ``net``'s model family (the function of its defining
    module): converts checkpoints of other layouts, e.g. timm 0.6's Swin and TnT, to ``net``'s."""
    return getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)


def checkpoint_state_dict(checkpoint: dict, use_ema: bool = True) -> Tuple[dict, bool]:
    """The weights of a checkpoint: its EMA weights where it has them and ``use_ema`` (what the
    release evaluates), else ``state_dict``/``model``, else the dict itself; ``module.`` prefixes
    removed. Returns them and whether they are the EMA weights."""
    for key, is_ema in (("state_dict_ema", True), ("model_ema", True), ("state_dict", False), ("model", False)):
        if (use_ema or not is_ema) and isinstance(checkpoint.get(key), dict):
            return clean_state_dict(checkpoint[key]), is_ema
    return clean_state_dict(checkpoint), False


def load_weights(net: torch.nn.Module, path: str, use_ema: bool = True, what: str = "checkpoint",
                 adapt_classifier: bool = True, may_lack: Sequence[str] = ("three_d_trl.",)) -> bool:
    """Load a checkpoint or state dict (this project's, the release's or timm's) into ``net``.

    The file is read without running code; the weights are chosen by :func:`checkpoint_state_dict`,
    converted by the family's :func:`checkpoint_filter` and must then fit ``net`` exactly, except a
    classifier of another class count where ``adapt_classifier`` (left at its initialisation, as
    timm's pretrained loading does) and keys under the prefixes ``may_lack`` (by default the 3DTRL
    layer, so that a plain backbone's weights start a 3DTRL model), both with a warning.
    Returns whether the EMA weights were loaded.

    Raises:
        UserError: unreadable file, or weights that do not fit (naming the first keys).
    """
    checkpoint = load_checkpoint_file(path, what)
    if not isinstance(checkpoint, dict):
        raise UserError(f"{what} {path} is not a checkpoint or state dict")
    return load_checkpoint_weights(net, checkpoint, path, use_ema, what, adapt_classifier, may_lack)


def load_checkpoint_weights(net: torch.nn.Module, checkpoint: dict, path: str, use_ema: bool = True,
                            what: str = "checkpoint", adapt_classifier: bool = True,
                            may_lack: Sequence[str] = ("three_d_trl.",)) -> bool:
    """:func:`load_weights` of a checkpoint already read from ``path`` (named in the messages)."""
    state_dict, is_ema = checkpoint_state_dict(checkpoint, use_ema)
    filter_fn = checkpoint_filter(net)
    try:
        state_dict = filter_fn(state_dict, net) if filter_fn is not None else state_dict
    except (KeyError, RuntimeError, ValueError, AssertionError, AttributeError) as err:
        raise UserError(f"{what} {path} does not fit {type(net).__name__}: {str(err).splitlines()[0]}") from None
    own = net.state_dict()
    classifier = getattr(net, "pretrained_cfg", {}).get("classifier") or "head"
    for key in [k for k in state_dict if adapt_classifier and k.startswith(classifier + ".")]:
        if key not in own:  # a model without a classifier (num_classes=0)
            del state_dict[key]
        elif state_dict[key].shape != own[key].shape:
            _logger.warning("%s: %s has shape %s, the model %s: left at its initialisation", path, key,
                            tuple(state_dict[key].shape), tuple(own[key].shape))
            del state_dict[key]
    mismatched = [k for k in state_dict if k in own and state_dict[k].shape != own[k].shape]
    unexpected = [k for k in state_dict if k not in own]
    absent = [k for k in own if k not in state_dict and not k.endswith(_DERIVED_BUFFERS)
              and not (adapt_classifier and k.startswith(classifier + "."))]
    missing = [k for k in absent if not k.startswith(tuple(may_lack))]
    if absent and not missing:
        _logger.warning("%s: %d keys not in it keep their initialisation: %s", path, len(absent), ", ".join(absent))
    if mismatched or unexpected or missing:
        parts = [f"{name}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for name, keys in (("other shapes", mismatched), ("unexpected", unexpected), ("missing", missing))
                 if keys]
        raise UserError(f"{what} {path} does not fit {type(net).__name__} ({'; '.join(parts)})")
    net.load_state_dict(state_dict, strict=False)
    return is_ema


def embed(net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pooled pre-logits features of any timm classifier: CLS token for ViT/TnT, token mean for Swin.

    Args:
        images: ``(B, 3, H, W)``.

    Returns:
        ``(B, D)``.
    """
    return net.forward_head(net.forward_features(images), pre_logits=True)


def format_token_intermediates(intermediates: List[torch.Tensor], num_prefix_tokens: int,
                               grid_size: Tuple[int, int], output_fmt: str, return_prefix_tokens: bool
                               ) -> list:
    """Split prefix tokens off ``(B, P + N, D)`` intermediates and shape them as timm does.

    Returns a list of ``(B, D, h, w)`` (``NCHW``) or ``(B, N, D)`` (``NLC``) tensors, each
    paired with its ``(B, P, D)`` prefix tokens when ``return_prefix_tokens``.
    """
    if output_fmt not in ("NCHW", "NLC"):
        raise ValueError(f"output_fmt must be NCHW or NLC, got {output_fmt!r}")
    prefix = [y[:, :num_prefix_tokens] for y in intermediates]
    spatial = [y[:, num_prefix_tokens:] for y in intermediates]
    if output_fmt == "NCHW":
        spatial = [y.unflatten(1, grid_size).permute(0, 3, 1, 2).contiguous() for y in spatial]
    if return_prefix_tokens and num_prefix_tokens:
        return list(zip(spatial, prefix))
    return spatial


def with_trl_group(matcher: dict, ordinal: Tuple[int, ...]) -> dict:
    """timm's ``group_matcher`` dict with ``three_d_trl`` in the group ``ordinal`` of the ``blocks``
    entry: the group of the block the layer sits before, so that layer-wise LR decay gives the layer
    that block's scale (unmatched parameters would get the classifier's)."""
    blocks = matcher["blocks"]
    specs = [(blocks, None)] if isinstance(blocks, str) else list(blocks)
    return dict(matcher, blocks=[(r"^three_d_trl\.", tuple(ordinal))] + specs)


def attach_three_d_trl(model: torch.nn.Module, trl_depth: int, sites: Sequence[Tuple[int, Tuple[int, int]]],
                       what: str, has_cls: bool, **layer_kwargs) -> None:
    """The 3DTRL part of the ViT, TnT and Swin constructors. ``sites`` gives, for each of the
    model's blocks or stages (``what``), the width and ``(h, w)`` grid of the tokens entering it:
    check that ``trl_depth`` is one of them, keep it, and build ``model.three_d_trl`` for that site
    (``layer_kwargs``: see :class:`ThreeDTRL`)."""
    if not 0 <= trl_depth < len(sites):
        raise ValueError(f"trl_depth={trl_depth} out of range: the model has {len(sites)} {what}")
    dim, grid_size = sites[trl_depth]
    model.trl_depth = trl_depth
    model.three_d_trl = ThreeDTRL(dim, grid_size, has_cls=has_cls, **layer_kwargs)



def check_input_size(net: torch.nn.Module, img_size: int) -> None:
    """Run one blank ``(1, 3, img_size, img_size)`` image through ``net``; raises ``ValueError`` with
    the reason when the model cannot take that size (e.g. smaller than its patch)."""
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    if grid is not None and min(grid) < 1:
        raise ValueError(f"{img_size} px is smaller than one patch of the model")
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, img_size, img_size))
    except (RuntimeError, AssertionError, ValueError) as err:
        raise ValueError(f"{img_size} px does not fit the model: {str(err).splitlines()[0]}") from None
    finally:
        net.train(was_training)
