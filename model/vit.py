"""Plain ViT with the same interface as the 3DTRL models (the paper's "DeiT" baseline).

``ViT`` is timm's ``VisionTransformer`` unchanged (same weights, same outputs) with the
extra entry points the tasks call on 3DTRL models: ``forward_features(x, return_geometry)``
(the geometry is None). The names ``vit_plain_*`` build it, so a
task can swap ``vit_3dtrl_tiny_patch16_224`` for ``vit_plain_tiny_patch16_224``.
"""
import torch
from timm.models import build_model_with_cfg, register_model
from timm.models._registry import generate_default_cfgs
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from .factory import derived_cfg

__all__ = ["ViT"]


class ViT(VisionTransformer):
    """timm ViT without 3DTRL."""

    def forward_features(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False,
                         return_geometry: bool = False):
        x = super().forward_features(x, attn_mask=attn_mask, is_causal=is_causal)
        return (x, None) if return_geometry else x


def _create_vit(variant: str, pretrained: bool = False, **kwargs) -> ViT:
    out_indices = kwargs.pop("out_indices", 3)
    return build_model_with_cfg(ViT, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(out_indices=out_indices, feature_cls="getter"), **kwargs)


default_cfgs = generate_default_cfgs({
    "vit_plain_tiny_patch16_224": derived_cfg("vit_tiny_patch16_224"),
    "vit_plain_small_patch16_224": derived_cfg("vit_small_patch16_224"),
    "vit_plain_base_patch16_224": derived_cfg("vit_base_patch16_224"),
})


@register_model
def vit_plain_tiny_patch16_224(pretrained: bool = False, **kwargs) -> ViT:
    """ViT-Ti/16 (DeiT-T) without 3DTRL."""
    model_args = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3)
    return _create_vit("vit_plain_tiny_patch16_224", pretrained, **dict(model_args, **kwargs))


@register_model
def vit_plain_small_patch16_224(pretrained: bool = False, **kwargs) -> ViT:
    """ViT-S/16 (DeiT-S) without 3DTRL."""
    model_args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)
    return _create_vit("vit_plain_small_patch16_224", pretrained, **dict(model_args, **kwargs))


@register_model
def vit_plain_base_patch16_224(pretrained: bool = False, **kwargs) -> ViT:
    """ViT-B/16 (DeiT-B) without 3DTRL."""
    model_args = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12)
    return _create_vit("vit_plain_base_patch16_224", pretrained, **dict(model_args, **kwargs))
