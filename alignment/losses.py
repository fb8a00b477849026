"""Time-contrastive losses: the release's two-view triplet loss and the multi-view n-pairs loss."""
from typing import Optional

import torch
import torch.nn.functional as F

LOSSES = ("triplet", "npairs")
MARGIN = 30.0  # 100 * 0.3, the release's margin on squared distances


def time_contrastive_loss(z: torch.Tensor, margin: float = MARGIN, release: bool = False) -> torch.Tensor:
    """Two-view triplet loss on squared Euclidean distances of raw embeddings.

    Args:
        z: ``(B, 2, 3, D)``: (view 1, view 2) x (anchor, positive, negative).
        release: the release's variant, where view 2's positive and negative are view 1's.

    Returns:
        Mean over the batch of ``max(0, d(a1,a2) + d(p1,p2) + d(a1,p1) + d(a2,p2) + d(a1,p2) + d(a2,p1)
        - d(a1,n2) - d(a2,n1) - d(a1,n1) - d(a2,n2) + margin)``.
    """
    a1, p1, n1 = z[:, 0].unbind(1)
    a2, p2, n2 = z[:, 1].unbind(1)
    if release:
        p2, n2 = p1, n1

    def d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).pow(2).sum(-1)

    pull = d(a1, a2) + d(p1, p2) + d(a1, p1) + d(a2, p2) + d(a1, p2) + d(a2, p1)
    push = d(a1, n2) + d(a2, n1) + d(a1, n1) + d(a2, n2)
    return F.relu(pull - push + margin).mean()


def npairs_loss(z: torch.Tensor, temperature: float = 0.1, times: Optional[torch.Tensor] = None,
                sigma: float = 0.0) -> torch.Tensor:
    """Multi-view n-pairs (InfoNCE) loss over time-aligned clips of K views.

    Args:
        z: ``(B, K, L, D)`` L2-normalised embeddings: K views x the clip's L instants.
        times: ``(B, L)`` frame indices of the clips' instants (needed when ``sigma > 0``).
        sigma: 0: the target of instant i is instant i alone; > 0: a Gaussian over the clip's instants
            centred on i with this standard deviation in frames, so that a near miss costs less than
            a far one.

    Returns:
        Mean over clips, ordered view pairs ``(v, w), v != w`` and instants ``i`` of the cross-entropy
        of ``softmax_j(z[v, i] . z[w, j] / temperature)`` against the target of ``i``. With K = 2 and
        ``sigma = 0`` this is the two-view loss in both directions.
    """
    batch, views, length, _ = z.shape
    logits = torch.einsum("bvid,bwjd->bvwij", z, z) / temperature
    pairs = ~torch.eye(views, dtype=torch.bool, device=z.device)
    logits = logits[:, pairs]                                   # (B, K(K-1), L, L)
    if sigma > 0:
        gap = (times[:, :, None] - times[:, None, :]).to(z.dtype)
        target = torch.softmax(-gap.square() / (2 * sigma ** 2), dim=-1)[:, None].expand_as(logits)
        return -(target * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
    target = torch.arange(length, device=z.device).expand(*logits.shape[:2], length)
    return F.cross_entropy(logits.flatten(0, 2), target.flatten())
