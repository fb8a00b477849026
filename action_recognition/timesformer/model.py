"""TimeSformer (divided / joint space-time and space-only attention) with an optional 3DTRL layer.

Parameter names follow the public TimeSformer checkpoints: the network is the attribute
``model`` of :class:`TimeSformer`, so keys read ``model.blocks.3.temporal_attn.qkv.weight``,
and the 3DTRL layer is ``model.three_d_trl``. The 3DTRL layer is the project's one
implementation, :class:`model.ThreeDTRL`, called on the clip's tokens in ``(h w t)`` order.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Attention, DropPath, Mlp, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from torch import nn

from model import ThreeDTRL

from .config import model_depth

LAYER_NORM_EPS = 1e-6


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


class Block(nn.Module):
    """A TimeSformer block; ``divided_space_time`` adds a temporal attention before the spatial one."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, attention_type: str = "divided_space_time"):
        super().__init__()
        self.attention_type = attention_type
        self.norm1 = _layer_norm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=True, attn_drop=attn_drop, proj_drop=drop)
        if attention_type == "divided_space_time":
            self.temporal_norm1 = _layer_norm(dim)
            self.temporal_attn = Attention(dim, num_heads, qkv_bias=True, attn_drop=attn_drop, proj_drop=drop)
            self.temporal_fc = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, num_frames: int, grid_size: Tuple[int, int]) -> torch.Tensor:
        """``(B, 1 + N*T, D)`` (space-only: ``(B*T, 1 + N, D)``) -> same shape."""
        if self.attention_type == "divided_space_time":
            x = self._divided_attention(x, num_frames, grid_size)
        else:
            x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _divided_attention(self, x: torch.Tensor, num_frames: int, grid_size: Tuple[int, int]) -> torch.Tensor:
        """Temporal attention over each patch's ``T`` tokens, then spatial attention per frame, where every
        frame gets a copy of the CLS token and the frames' CLS outputs are averaged back."""
        h, w = grid_size
        t = num_frames
        cls, patches = x[:, :1], x[:, 1:]

        xt = rearrange(patches, "b (h w t) d -> (b h w) t d", h=h, w=w, t=t)
        xt = self.drop_path(self.temporal_attn(self.temporal_norm1(xt)))
        xt = self.temporal_fc(rearrange(xt, "(b h w) t d -> b (h w t) d", h=h, w=w, t=t))
        patches = patches + xt

        xs = rearrange(patches, "b (h w t) d -> (b t) (h w) d", h=h, w=w, t=t)
        xs = torch.cat([cls.repeat_interleave(t, dim=0), xs], dim=1)
        xs = self.drop_path(self.attn(self.norm1(xs)))
        cls_res = rearrange(xs[:, :1], "(b t) 1 d -> b t d", t=t).mean(dim=1, keepdim=True)
        patch_res = rearrange(xs[:, 1:], "(b t) (h w) d -> b (h w t) d", h=h, w=w, t=t)
        return torch.cat([cls, patches], dim=1) + torch.cat([cls_res, patch_res], dim=1)


class VisionTransformer(nn.Module):
    """The video transformer: patch embedding per frame, spatial ``pos_embed`` ``(1, 1+N, D)``,
    ``time_embed`` ``(1, T, D)``, ``depth`` blocks and, if ``trl_loc`` is set, 3DTRL before block ``trl_loc``.

    Input ``(B, 3, T, H, W)``; H and W may differ from ``img_size`` (the position embedding is
    resampled) and T from ``num_frames`` (the time embedding is interpolated).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 400,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 head_dropout: float = 0.0, num_frames: int = 8, attention_type: str = "divided_space_time",
                 trl_loc: Optional[int] = None, pred_depth: bool = True, pred_campos_from: str = "both-sep",
                 trl_init: str = "release"):
        super().__init__()
        self.attention_type = attention_type
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False)
        self.grid_size = tuple(self.patch_embed.grid_size)
        num_patches = self.grid_size[0] * self.grid_size[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        if attention_type != "space_only":
            self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dim))
            self.time_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, drop_rate, attn_drop_rate, rates[i], attention_type)
            for i in range(depth)])
        self.norm = _layer_norm(embed_dim)
        self.head_drop = nn.Dropout(head_dropout)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.trl_loc = trl_loc
        # release: the layer exists before the model's initialisation, which then covers its Linears too
        if trl_loc is not None and trl_init == "release":
            self.three_d_trl = self._build_trl(pred_depth, pred_campos_from)
        self._init_weights()
        if trl_loc is not None and trl_init != "release":
            self.three_d_trl = self._build_trl(pred_depth, pred_campos_from)

    def _build_trl(self, pred_depth: bool, pred_campos_from: str) -> ThreeDTRL:
        return ThreeDTRL(self.embed_dim, self.grid_size, has_cls=True, pred_depth=pred_depth,
                         pred_campos_from=pred_campos_from, zero_init_rotation=True)

    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.attention_type == "divided_space_time":
            for block in self.blocks[1:]:
                nn.init.zeros_(block.temporal_fc.weight)
                nn.init.zeros_(block.temporal_fc.bias)

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"pos_embed", "cls_token", "time_embed"}  # the release's; 3DTRL decays as in the image models

    def spatial_pos_embed(self, grid_size: Tuple[int, int]) -> torch.Tensor:
        """``(1, 1 + h*w, D)`` position embedding for the token grid ``grid_size``."""
        if tuple(grid_size) == self.grid_size:
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, list(grid_size), list(self.grid_size), num_prefix_tokens=1)

    def temporal_embed(self, num_frames: int) -> torch.Tensor:
        """``(1, T, D)`` time embedding (nearest-neighbour interpolation for another ``T``)."""
        if num_frames == self.time_embed.shape[1]:
            return self.time_embed
        return F.interpolate(self.time_embed.transpose(1, 2), size=num_frames, mode="nearest").transpose(1, 2)

    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """``(B, C, T, H, W)`` -> tokens (``(B, 1 + N*T, D)``, space-only ``(B*T, 1 + N, D)``) and the grid."""
        batch, _, num_frames, height, width = x.shape
        grid_size = self.patch_embed.dynamic_feat_size((height, width))
        x = self.patch_embed(rearrange(x, "b c t h w -> (b t) c h w"))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.spatial_pos_embed(grid_size))
        if self.attention_type == "space_only":
            return x, grid_size
        cls = x.unflatten(0, (batch, num_frames))[:, 0, :1]
        patches = rearrange(x[:, 1:], "(b t) n d -> (b n) t d", b=batch)
        patches = self.time_drop(patches + self.temporal_embed(num_frames))
        patches = rearrange(patches, "(b n) t d -> b (n t) d", b=batch)
        return torch.cat([cls, patches], dim=1), grid_size

    def forward_features(self, x: torch.Tensor, return_geometry: bool = False):
        """``(B, C, T, H, W)`` -> normalised tokens ``(B, 1 + N*T, D)`` (space-only: ``(B, 1 + N, D)``,
        averaged over frames), and the 3DTRL :class:`~backbone.TokenGeometry` when asked."""
        batch, num_frames = x.shape[0], x.shape[2]
        x, grid_size = self._embed(x)
        geometry = None
        for i, block in enumerate(self.blocks):
            if i == self.trl_loc:
                x, geometry = self._apply_trl(x, grid_size, num_frames)
            x = block(x, num_frames, grid_size)
        if self.attention_type == "space_only":
            x = x.unflatten(0, (batch, num_frames)).mean(dim=1)
        x = self.norm(x)
        return (x, geometry) if return_geometry else x

    def _apply_trl(self, x: torch.Tensor, grid_size: Tuple[int, int], num_frames: int):
        """3DTRL with one camera per clip (per frame for space-only, whose tokens are per frame)."""
        frames = 1 if self.attention_type == "space_only" else num_frames
        return self.three_d_trl(x, grid_size, pe2d=self.spatial_pos_embed(grid_size), num_frames=frames,
                                return_geometry=True)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """CLS token ``(B, D)`` -> logits ``(B, num_classes)``."""
        x = self.head_drop(x[:, 0])
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class TimeSformer(nn.Module):
    """Holds the network as ``self.model`` so parameter names match public TimeSformer checkpoints."""

    def __init__(self, **kwargs):
        super().__init__()
        self.model = VisionTransformer(**kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` clips -> ``(B, num_classes)`` logits."""
        return self.model(x)


def build_model(cfg) -> TimeSformer:
    """The TimeSformer (with 3DTRL when ``TRL.ENABLE``) that ``cfg`` describes."""
    t = cfg.TIMESFORMER
    return TimeSformer(
        img_size=cfg.DATA.TRAIN_CROP_SIZE, patch_size=t.PATCH_SIZE, in_chans=cfg.DATA.INPUT_CHANNEL_NUM[0],
        num_classes=cfg.MODEL.NUM_CLASSES, embed_dim=t.EMBED_DIM, depth=model_depth(cfg), num_heads=t.NUM_HEADS,
        mlp_ratio=t.MLP_RATIO, drop_path_rate=t.DROP_PATH_RATE,
        head_dropout=cfg.MODEL.DROPOUT_RATE if cfg.MODEL.HEAD_DROPOUT else 0.0,
        num_frames=cfg.DATA.NUM_FRAMES, attention_type=t.ATTENTION_TYPE,
        trl_loc=cfg.TRL.LOC if cfg.TRL.ENABLE else None, pred_depth=cfg.TRL.PRED_DEPTH,
        pred_campos_from=cfg.TRL.PRED_CAMPOS_FROM, trl_init=cfg.TRL.INIT)
