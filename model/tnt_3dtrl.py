"""Transformer-in-Transformer (TnT) with 3DTRL before outer block ``trl_depth``.

3DTRL acts on the outer (patch) embeddings; the 2D term is TnT's ``patch_pos``. The default TnT is
the one the release was built on, timm 0.6's (``legacy=True`` in timm 1.x: pixel embedding by
convolution then unfolding, no ``norm2_proj`` in the blocks), so release checkpoints load;
``legacy=False`` builds timm 1.x's TnT instead.
"""
from typing import List, Optional, Union

import torch
from timm.models._features import feature_take_indices
from timm.models import register_model
from timm.models._registry import generate_default_cfgs
from timm.models.tnt import TNT, checkpoint_filter_fn
from torch.utils.checkpoint import checkpoint

from .factory import (build_3dtrl_model, attach_three_d_trl, derived_cfg, format_token_intermediates,
                       with_trl_group)

__all__ = ["TNT_3DTRL"]


class TNT_3DTRL(TNT):
    """TnT with a 3D Token Representation Layer on the patch embeddings.

    Args:
        trl_depth: index of the outer block 3DTRL is inserted before.
        pred_depth, pred_campos_from, cat, x2d: see :class:`model.ThreeDTRL`.
        trl_geometry: the layer's geometry options (``depth_activation``, ``focal``, ``principal_point``,
            ``learn_focal``; see :class:`model.ThreeDTRL`), none by default.
        **kwargs: timm ``TNT`` arguments.
    """

    def __init__(self, *args, trl_depth: int = 4, pred_depth: bool = True, pred_campos_from: str = "both-sep",
                 cat: bool = False, x2d: bool = False, trl_geometry: Optional[dict] = None, **kwargs):
        if isinstance(kwargs.get("global_pool"), bool):  # the release's TnT took a boolean and kept the CLS token
            kwargs["global_pool"] = "token"
        super().__init__(*args, **kwargs)
        attach_three_d_trl(self, trl_depth, [(self.embed_dim, self.pixel_embed.grid_size)] * len(self.blocks),
                           "blocks", has_cls=True, pred_depth=pred_depth, pred_campos_from=pred_campos_from, cat=cat,
                           x2d=x2d, **(trl_geometry or {}))

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's groups; ``three_d_trl`` joins outer block ``trl_depth``, the block it feeds."""
        return with_trl_group(super().group_matcher(coarse), (self.trl_depth,))

    def _embed(self, x: torch.Tensor):
        """Images -> pixel embeddings and ``(B, 1 + N, D)`` patch embeddings."""
        batch = x.shape[0]
        pixel_embed = self.pixel_embed(x, self.pixel_pos)
        patch_embed = self.norm2_proj(self.proj(self.norm1_proj(pixel_embed.reshape(batch, self.num_patches, -1))))
        patch_embed = torch.cat((self.cls_token.expand(batch, -1, -1), patch_embed), dim=1)
        return pixel_embed, self.pos_drop(patch_embed + self.patch_pos)

    def _forward_blocks(self, pixel_embed, patch_embed, take=(), norm=False, last_index=None):
        grid_size = tuple(self.pixel_embed.grid_size)
        intermediates, geometry = [], None
        blocks = self.blocks if last_index is None else self.blocks[:last_index + 1]
        for i, block in enumerate(blocks):
            if i == self.trl_depth:
                patch_embed, geometry = self.three_d_trl(patch_embed, grid_size, self.patch_pos, return_geometry=True)
            if self.grad_checkpointing:
                pixel_embed, patch_embed = checkpoint(block, pixel_embed, patch_embed, use_reentrant=False)
            else:
                pixel_embed, patch_embed = block(pixel_embed, patch_embed)
            if i in take:
                intermediates.append(self.norm(patch_embed) if norm else patch_embed)
        return patch_embed, intermediates, geometry

    def forward_features(self, x: torch.Tensor, return_geometry: bool = False):
        """``(B, 3, H, W)`` -> normalised patch embeddings ``(B, 1 + N, D)`` (and the geometry if asked)."""
        patch_embed, _, geometry = self._forward_blocks(*self._embed(x))
        patch_embed = self.norm(patch_embed)
        return (patch_embed, geometry) if return_geometry else patch_embed

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            return_prefix_tokens: bool = False,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ):
        """timm's ``forward_intermediates`` with 3DTRL on the path."""
        take, max_index = feature_take_indices(len(self.blocks), indices)
        patch_embed, intermediates, _ = self._forward_blocks(
            *self._embed(x), take, norm, max_index if stop_early else None)
        intermediates = format_token_intermediates(
            intermediates, self.num_prefix_tokens, tuple(self.pixel_embed.grid_size), output_fmt,
            return_prefix_tokens)
        if intermediates_only:
            return intermediates
        return self.norm(patch_embed), intermediates



def _create_tnt_3dtrl(variant: str, pretrained: bool = False, **kwargs) -> TNT_3DTRL:
    kwargs.setdefault("legacy", True)
    return build_3dtrl_model(TNT_3DTRL, variant, pretrained, checkpoint_filter_fn, 3, **kwargs)


def tnt_layout_kwargs(state_dict: dict) -> dict:
    """``legacy`` for a TnT checkpoint: False where its blocks have timm 1.x's ``norm2_proj``."""
    return {"legacy": not any(key.endswith("norm2_proj.weight") and key.startswith("blocks.") for key in state_dict)}


# The base weights: timm's port of the TnT-S the release was built on; TnT-B exists only in timm 1.x's
# layout, so its pretrained backbone needs legacy=False.
default_cfgs = generate_default_cfgs({
    "tnt_3dtrl_s_patch16_224": derived_cfg("tnt_s_legacy_patch16_224"),
    "tnt_3dtrl_b_patch16_224": derived_cfg("tnt_b_patch16_224"),
})


@register_model
def tnt_3dtrl_s_patch16_224(pretrained: bool = False, **kwargs) -> TNT_3DTRL:
    """TnT-S + 3DTRL."""
    model_args = dict(patch_size=16, embed_dim=384, inner_dim=24, depth=12, num_heads_outer=6, num_heads_inner=4,
                      qkv_bias=False)
    return _create_tnt_3dtrl("tnt_3dtrl_s_patch16_224", pretrained, **dict(model_args, **kwargs))


@register_model
def tnt_3dtrl_b_patch16_224(pretrained: bool = False, **kwargs) -> TNT_3DTRL:
    """TnT-B + 3DTRL."""
    model_args = dict(patch_size=16, embed_dim=640, inner_dim=40, depth=12, num_heads_outer=10, num_heads_inner=4,
                      qkv_bias=False)
    return _create_tnt_3dtrl("tnt_3dtrl_b_patch16_224", pretrained, **dict(model_args, **kwargs))
