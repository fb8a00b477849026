"""Swin Transformer with 3DTRL at the input of the blocks of stage ``trl_depth``.

In timm 1.x a stage begins with its patch merging, so 3DTRL sits between the merging and
the blocks of stage ``trl_depth`` (default 1: 28x28 tokens of width 192 for Swin-T/S at
224 px). Swin has no CLS token and no absolute position embedding: the camera is estimated
from the tokens (``tok``) and no 2D term is added.
"""
from typing import List, Optional, Tuple, Union

import torch
from timm.models._features import feature_take_indices
from timm.models import register_model
from timm.models._manipulate import checkpoint_seq
from timm.models._registry import generate_default_cfgs
from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn

from .factory import build_3dtrl_model, attach_three_d_trl, derived_cfg, with_trl_group

__all__ = ["Swin_3DTRL"]


class Swin_3DTRL(SwinTransformer):
    """Swin Transformer with a 3D Token Representation Layer.

    Args:
        trl_depth: stage whose blocks receive the 3DTRL output.
        pred_depth, pred_campos_from, cat, x2d: see :class:`model.ThreeDTRL`.
        trl_geometry: the layer's geometry options (``depth_activation``, ``focal``, ``principal_point``,
            ``learn_focal``; see :class:`model.ThreeDTRL`), none by default
            (``pred_campos_from`` must be ``tok``: Swin has no CLS token).
        **kwargs: timm ``SwinTransformer`` arguments.
    """

    def __init__(self, *args, trl_depth: int = 1, pred_depth: bool = True, pred_campos_from: str = "tok",
                 cat: bool = False, x2d: bool = False, trl_geometry: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        sites = [(info["num_chs"], stage.output_resolution) for info, stage in zip(self.feature_info, self.layers)]
        attach_three_d_trl(self, trl_depth, sites, "stages", has_cls=False, pred_depth=pred_depth,
                           pred_campos_from=pred_campos_from, cat=cat, x2d=x2d, **(trl_geometry or {}))

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's groups; ``three_d_trl`` joins the first group of stage ``trl_depth`` (its patch
        merging and first block), which it sits between."""
        return with_trl_group(super().group_matcher(coarse), (self.trl_depth,) if coarse else (self.trl_depth, 0))

    def _forward_stage(self, index: int, x: torch.Tensor):
        """Run stage ``index`` on ``(B, H, W, C)`` tokens; 3DTRL between merging and blocks."""
        stage = self.layers[index]
        if index != self.trl_depth:
            return stage(x), None
        x = stage.downsample(x)
        batch, height, width, channels = x.shape
        x, geometry = self.three_d_trl(x.reshape(batch, height * width, channels), (height, width),
                                       return_geometry=True)
        x = x.reshape(batch, height, width, channels)
        x = checkpoint_seq(stage.blocks, x) if stage.grad_checkpointing else stage.blocks(x)
        return x, geometry

    def forward_features(self, x: torch.Tensor, return_geometry: bool = False):
        """``(B, 3, H, W)`` -> normalised ``(B, h, w, C)`` features (and the 3DTRL geometry if asked)."""
        x = self.patch_embed(x)
        geometry = None
        for index in range(len(self.layers)):
            x, stage_geometry = self._forward_stage(index, x)
            geometry = stage_geometry if stage_geometry is not None else geometry
        x = self.norm(x)
        return (x, geometry) if return_geometry else x

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """timm's ``forward_intermediates`` with 3DTRL on the path (stage outputs, NCHW)."""
        if output_fmt != "NCHW":
            raise ValueError("Swin intermediates are NCHW only")
        take, max_index = feature_take_indices(len(self.layers), indices)
        last = max_index if stop_early else len(self.layers) - 1
        intermediates = []
        x = self.patch_embed(x)
        for index in range(last + 1):
            x, _ = self._forward_stage(index, x)
            if index in take:
                x_out = self.norm(x) if norm and index == len(self.layers) - 1 else x
                intermediates.append(x_out.permute(0, 3, 1, 2).contiguous())
        if intermediates_only:
            return intermediates
        if last == len(self.layers) - 1:
            x = self.norm(x)
        return x, intermediates



def _create_swin_3dtrl(variant: str, pretrained: bool = False, **kwargs) -> Swin_3DTRL:
    stages = tuple(range(len(kwargs.get("depths", (1, 1, 3, 1)))))
    return build_3dtrl_model(Swin_3DTRL, variant, pretrained, checkpoint_filter_fn, stages, **kwargs)


default_cfgs = generate_default_cfgs({
    "swin_3dtrl_tiny_patch4_window7_224": derived_cfg("swin_tiny_patch4_window7_224"),
    "swin_3dtrl_small_patch4_window7_224": derived_cfg("swin_small_patch4_window7_224"),
    "swin_3dtrl_base_patch4_window7_224": derived_cfg("swin_base_patch4_window7_224"),
})


@register_model
def swin_3dtrl_tiny_patch4_window7_224(pretrained: bool = False, **kwargs) -> Swin_3DTRL:
    """Swin-T + 3DTRL."""
    model_args = dict(patch_size=4, window_size=7, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
    return _create_swin_3dtrl("swin_3dtrl_tiny_patch4_window7_224", pretrained, **dict(model_args, **kwargs))


@register_model
def swin_3dtrl_small_patch4_window7_224(pretrained: bool = False, **kwargs) -> Swin_3DTRL:
    """Swin-S + 3DTRL."""
    model_args = dict(patch_size=4, window_size=7, embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
    return _create_swin_3dtrl("swin_3dtrl_small_patch4_window7_224", pretrained, **dict(model_args, **kwargs))


@register_model
def swin_3dtrl_base_patch4_window7_224(pretrained: bool = False, **kwargs) -> Swin_3DTRL:
    """Swin-B + 3DTRL."""
    model_args = dict(patch_size=4, window_size=7, embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
    return _create_swin_3dtrl("swin_3dtrl_base_patch4_window7_224", pretrained, **dict(model_args, **kwargs))
