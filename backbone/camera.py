"""Camera estimator: one rotation and translation per image (or per clip) from its tokens."""
from typing import Optional, Tuple

import torch
from torch import nn

from .geometry import euler_to_rotation

CAMERA_MODES = ("both-sep", "both-avg", "cls", "tok")
MIX_DIM = 32


def _mlp(*dims: int, final_relu: bool) -> nn.Sequential:
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if final_relu or i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CameraEstimator(nn.Module):
    """Predicts the camera pose ``(R, t)`` from the CLS token and/or the patch tokens.

    ``pred_campos_from`` selects the input:
      - ``both-sep``: ``cls_proj(cls) + token_proj_2(mean(token_proj_1(patches)))``
      - ``both-avg``: the token branch over ``[cls, patches]``
      - ``cls``: ``cls_proj(cls)``
      - ``tok``: the token branch over the patches (models without CLS)

    Only the submodules the mode uses are created.
    """

    def __init__(self, dim: int, pred_campos_from: str = "both-sep", zero_init_rotation: bool = False):
        super().__init__()
        if pred_campos_from not in CAMERA_MODES:
            raise ValueError(f"unknown camera mode {pred_campos_from!r}; choose one of {', '.join(CAMERA_MODES)}")
        self.mode = pred_campos_from
        if self.mode in ("both-sep", "cls"):
            self.cls_proj = _mlp(dim, dim, dim, final_relu=True)
        if self.mode != "cls":
            self.token_proj_1 = _mlp(dim, dim, final_relu=True)
            self.token_proj_2 = _mlp(dim, dim, final_relu=True)
        self.mix_proj = _mlp(dim, MIX_DIM, MIX_DIM, final_relu=False)
        self.rot = nn.Linear(MIX_DIM, 3)
        self.trans = nn.Linear(MIX_DIM, 3)
        nn.init.ones_(self.trans.weight)
        nn.init.zeros_(self.trans.bias)
        if zero_init_rotation:
            nn.init.zeros_(self.rot.weight)
            nn.init.zeros_(self.rot.bias)

    @property
    def uses_cls(self) -> bool:
        return self.mode != "tok"

    def _token_branch(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_proj_2(self.token_proj_1(tokens).mean(dim=1))

    def forward(self, patches: torch.Tensor, cls: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Estimate the camera of each sample.

        Args:
            patches: ``(B, M, D)`` patch tokens (all frames of a clip for video).
            cls: ``(B, D)`` CLS token; required unless the mode is ``tok``.

        Returns:
            rotation ``(B, 3, 3)`` and translation ``(B, 1, 3)``.
        """
        if self.mode == "both-sep":
            h = self.cls_proj(cls) + self._token_branch(patches)
        elif self.mode == "both-avg":
            h = self._token_branch(torch.cat([cls.unsqueeze(1), patches], dim=1))
        elif self.mode == "cls":
            h = self.cls_proj(cls)
        else:
            h = self._token_branch(patches)
        g = self.mix_proj(h)
        return euler_to_rotation(self.rot(g)), self.trans(g).unsqueeze(1)
