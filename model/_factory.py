"""Shared building blocks of the 3DTRL model families: pretrained configs, building, feature outputs."""
import logging
from functools import partial
from typing import Callable, List, Sequence, Tuple

import torch
from timm.models import build_model_with_cfg, get_pretrained_cfg

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


def build_3dtrl_model(model_cls: type, variant: str, pretrained: bool, filter_fn: Callable,
                      default_out_indices, **kwargs):
    """Build a 3DTRL model with timm's builder; pretrained weights load the backbone part.

    ``features_only`` models use the model's own ``forward_intermediates``, so 3DTRL is on
    their path too.
    """
    trl = trl_kwargs(kwargs)
    out_indices = kwargs.pop("out_indices", default_out_indices)
    return build_model_with_cfg(
        model_cls, variant, pretrained,
        pretrained_filter_fn=partial(_filter_and_report, filter_fn),
        pretrained_strict=False,
        feature_cfg=dict(out_indices=out_indices, feature_cls="getter"),
        **trl, **kwargs,
    )


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
