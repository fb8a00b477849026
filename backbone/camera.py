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

    def _pooled_tokens(self, tokens: torch.Tensor, cls: Optional[torch.Tensor]) -> torch.Tensor:
        """Mean of ``token_proj_1`` over the patch tokens (over all tokens in ``both-avg``).

        ``token_proj_1`` runs on the whole contiguous sequence and the CLS row is subtracted
        from the sum: the same mean without copying a slice of the tokens.
        """
        h = self.token_proj_1(tokens)
        if self.mode == "both-avg" or cls is None:
            return h.mean(dim=1)
        return (h.sum(dim=1) - self.token_proj_1(cls)) / (h.shape[1] - 1)

    def forward(self, tokens: torch.Tensor, num_prefix_tokens: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
        """Estimate the camera of each sample.

        Args:
            tokens: ``(B, P + M, D)``: the CLS token first when ``P = 1``, then the ``M`` patch
                tokens (all frames of a clip for video).
            num_prefix_tokens: ``P``, 1 with a CLS token, 0 without (mode ``tok`` only).

        Returns:
            rotation ``(B, 3, 3)`` and translation ``(B, 1, 3)``.
        """
        if self.uses_cls and num_prefix_tokens != 1:
            raise ValueError(f"camera mode {self.mode!r} needs a CLS token in front of the patch tokens")
        cls = tokens[:, 0] if num_prefix_tokens else None
        if self.mode == "cls":
            h = self.cls_proj(cls)
        elif self.mode == "both-sep":
            h = self.cls_proj(cls) + self.token_proj_2(self._pooled_tokens(tokens, cls))
        else:
            h = self.token_proj_2(self._pooled_tokens(tokens, cls))
        g = self.mix_proj(h)
        return euler_to_rotation(self.rot(g)), self.trans(g).unsqueeze(1)
