"""Pseudo-depth estimator: one depth value (or one camera-frame point) per patch token."""
import torch
from torch import nn


class PseudoDepthEstimator(nn.Module):
    """``Linear(D, D) -> ReLU -> Linear(D, 1)`` per patch token, no output activation.

    With ``pred_depth=False`` the last layer is ``Linear(D, 3)`` and predicts the
    camera-frame point directly.
    """

    def __init__(self, dim: int, pred_depth: bool = True):
        super().__init__()
        self.pred_depth = pred_depth
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1 if pred_depth else 3))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` patch tokens -> ``(B, N, 1)`` depth, or ``(B, N, 3)`` points."""
        return self.net(tokens)
