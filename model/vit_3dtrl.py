"""Vision Transformer (ViT / DeiT) with 3DTRL before block ``trl_depth``.

The model is timm's ``VisionTransformer`` with one extra module, ``three_d_trl``, applied to
the tokens entering block ``trl_depth`` (default 4 of 12). All other weights and keys are
timm's, so backbone checkpoints load unchanged.
"""
from typing import List, Optional, Tuple, Union

import torch
from timm.layers import resample_abs_pos_embed
from timm.models._features import feature_take_indices
from timm.models import register_model
from timm.models._registry import generate_default_cfgs
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn
from torch.utils.checkpoint import checkpoint

from .factory import (build_3dtrl_model, attach_three_d_trl, derived_cfg, format_token_intermediates,
                       with_trl_group)

__all__ = ["ViT_3DTRL"]


class ViT_3DTRL(VisionTransformer):
    """ViT with a 3D Token Representation Layer.

    Args:
        trl_depth: index of the block 3DTRL is inserted before.
        pred_depth, pred_campos_from, cat, x2d: see :class:`model.ThreeDTRL`; ``pred_campos_from``
            defaults to ``both-sep`` (the release's), or to ``tok`` for a model built without a CLS token.
        trl_geometry: the layer's geometry options (``depth_activation``, ``focal``, ``principal_point``,
            ``learn_focal``; see :class:`model.ThreeDTRL`), none by default.
        **kwargs: timm ``VisionTransformer`` arguments; ``global_pool`` may also be the release's
            boolean (False: the CLS token, True: the mean of the patch tokens).
    """

    def __init__(self, *args, trl_depth: int = 4, pred_depth: bool = True, pred_campos_from: Optional[str] = None,
                 cat: bool = False, x2d: bool = False, trl_geometry: Optional[dict] = None, **kwargs):
        if isinstance(kwargs.get("global_pool"), bool):  # the release's: False = CLS token, True = token mean
            kwargs["global_pool"] = "avg" if kwargs["global_pool"] else "token"
        super().__init__(*args, **kwargs)
        if self.reg_token is not None or not isinstance(self.patch_drop, nn.Identity):
            raise ValueError("3DTRL needs the full token grid: register tokens and patch dropout are not supported")
        if pred_campos_from is None:
            pred_campos_from = "both-sep" if self.cls_token is not None else "tok"
        attach_three_d_trl(self, trl_depth, [(self.embed_dim, self.patch_embed.grid_size)] * len(self.blocks),
                           "blocks", has_cls=self.cls_token is not None, pred_depth=pred_depth,
                           pred_campos_from=pred_campos_from, cat=cat, x2d=x2d, **(trl_geometry or {}))

    def _pos_embed_2d(self, grid_size: Tuple[int, int]) -> Optional[torch.Tensor]:
        """The learned 2D position embedding for ``grid_size`` (resampled as the input path does)."""
        if self.pos_embed is None or tuple(grid_size) == tuple(self.patch_embed.grid_size):
            return self.pos_embed
        return resample_abs_pos_embed(
            self.pos_embed, new_size=grid_size, old_size=self.patch_embed.grid_size,
            num_prefix_tokens=0 if self.no_embed_class else self.num_prefix_tokens)

    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``(B, 3, H, W)`` images -> ``(B, P + N, D)`` tokens and the ``(h, w)`` token grid."""
        grid_size = self.patch_embed.dynamic_feat_size(x.shape[-2:])
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        return x, grid_size

    def _forward_blocks(self, x: torch.Tensor, grid_size: Tuple[int, int], take: List[int] = (),
                        norm: bool = False, last_index: Optional[int] = None):
        """Run the blocks, 3DTRL before block ``trl_depth``; collect the outputs of blocks in ``take``."""
        intermediates, geometry = [], None
        blocks = self.blocks if last_index is None else self.blocks[:last_index + 1]
        for i, block in enumerate(blocks):
            if i == self.trl_depth:
                x, geometry = self.three_d_trl(x, grid_size, self._pos_embed_2d(grid_size), return_geometry=True)
            x = checkpoint(block, x, use_reentrant=False) if self.grad_checkpointing else block(x)
            if i in take:
                intermediates.append(self.norm(x) if norm else x)
        return x, intermediates, geometry

    def forward_features(self, x: torch.Tensor, return_geometry: bool = False):
        """``(B, 3, H, W)`` -> normalised tokens ``(B, P + N, D)`` (and the 3DTRL geometry if asked)."""
        x, grid_size = self._embed(x)
        x, _, geometry = self._forward_blocks(x, grid_size)
        x = self.norm(x)
        return (x, geometry) if return_geometry else x

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            return_prefix_tokens: bool = False,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
            output_dict: bool = False,
    ):
        """timm's ``forward_intermediates`` with 3DTRL on the path (same arguments and outputs)."""
        take, max_index = feature_take_indices(len(self.blocks), indices)
        x, grid_size = self._embed(x)
        x, intermediates, _ = self._forward_blocks(x, grid_size, take, norm, max_index if stop_early else None)
        if output_dict:
            result = {"image_intermediates": format_token_intermediates(
                intermediates, self.num_prefix_tokens, grid_size, output_fmt, False)}
            if return_prefix_tokens and self.num_prefix_tokens:
                result["image_intermediates_prefix"] = [y[:, :self.num_prefix_tokens] for y in intermediates]
            if not intermediates_only:
                result["image_features"] = self.norm(x)
            return result
        intermediates = format_token_intermediates(
            intermediates, self.num_prefix_tokens, grid_size, output_fmt, return_prefix_tokens)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's groups; ``three_d_trl`` joins block ``trl_depth``, the block it feeds."""
        return with_trl_group(super().group_matcher(coarse), (self.trl_depth,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))



def _create_vit_3dtrl(variant: str, pretrained: bool = False, **kwargs) -> ViT_3DTRL:
    return build_3dtrl_model(ViT_3DTRL, variant, pretrained, checkpoint_filter_fn, 3, **kwargs)


default_cfgs = generate_default_cfgs({
    "vit_3dtrl_tiny_patch16_224": derived_cfg("vit_tiny_patch16_224"),
    "vit_3dtrl_small_patch16_224": derived_cfg("vit_small_patch16_224"),
    "vit_3dtrl_base_patch16_224": derived_cfg("vit_base_patch16_224"),
    "vit_3dtrl_large_patch16_224": derived_cfg("vit_large_patch16_224"),
    "vit_3dtrl_huge_patch14_224": derived_cfg("vit_huge_patch14_224"),
    "vit_3dtrl_giant_patch14_224": derived_cfg("vit_giant_patch14_224"),
    "vit_3dtrl_gigantic_patch14_224": derived_cfg("vit_gigantic_patch14_224"),
})


@register_model
def vit_3dtrl_tiny_patch16_224(pretrained: bool = False, **kwargs) -> ViT_3DTRL:
    """ViT-Ti/16 (DeiT-T) + 3DTRL."""
    model_args = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3)
    return _create_vit_3dtrl("vit_3dtrl_tiny_patch16_224", pretrained, **dict(model_args, **kwargs))


@register_model
def vit_3dtrl_small_patch16_224(pretrained: bool = False, **kwargs) -> ViT_3DTRL:
    """ViT-S/16 (DeiT-S) + 3DTRL."""
    model_args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6)
    return _create_vit_3dtrl("vit_3dtrl_small_patch16_224", pretrained, **dict(model_args, **kwargs))


@register_model
def vit_3dtrl_base_patch16_224(pretrained: bool = False, **kwargs) -> ViT_3DTRL:
    """ViT-B/16 (DeiT-B) + 3DTRL."""
    model_args = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12)
    return _create_vit_3dtrl("vit_3dtrl_base_patch16_224", pretrained, **dict(model_args, **kwargs))


@register_model
def vit_3dtrl_large_patch16_224(pretrained: bool = False, **kwargs) -> ViT_3DTRL:
    """ViT-L/16 + 3DTRL."""
    model_args = dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16)
    return _create_vit_3dtrl("vit_3dtrl_large_patch16_224", pretrained, **dict(model_args, **kwargs))


@register_model
def vit_3dtrl_huge_patch14_224(pretrained: bool = False, **kwargs) -> ViT_3DTRL:
    """ViT-H/14 + 3DTRL."""
    model_args = dict(patch_size=14, embed_dim=1280, depth=32, num_heads=16)
    return _create_vit_3dtrl("vit_3dtrl_huge_patch14_224", pretrained, **dict(model_args, **kwargs))


@register_model
def vit_3dtrl_giant_patch14_224(pretrained: bool = False, **kwargs) -> ViT_3DTRL:
    """ViT-g/14 + 3DTRL."""
    model_args = dict(patch_size=14, embed_dim=1408, mlp_ratio=48 / 11, depth=40, num_heads=16)
    return _create_vit_3dtrl("vit_3dtrl_giant_patch14_224", pretrained, **dict(model_args, **kwargs))


@register_model
def vit_3dtrl_gigantic_patch14_224(pretrained: bool = False, **kwargs) -> ViT_3DTRL:
    """ViT-G/14 + 3DTRL."""
    model_args = dict(patch_size=14, embed_dim=1664, mlp_ratio=64 / 13, depth=48, num_heads=16)
    return _create_vit_3dtrl("vit_3dtrl_gigantic_patch14_224", pretrained, **dict(model_args, **kwargs))
