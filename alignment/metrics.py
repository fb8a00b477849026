"""Alignment metrics of two embedded videos: alignment error, cycle error, the release's Kendall's
tau and scipy's tau-b. ``utils`` re-exports them under the release's names.

All four come from the nearest frame of every frame, both ways. One matrix product
(``|a|^2 + |b|^2 - 2 a.b``) gives every squared distance; the few rows whose best match is not
clear of the runner-up by that expansion's rounding error are recomputed as ``sum((a - b)^2)``,
the release's formula, so the matches (ties included: first index wins) are the release's.
"""
import numpy as np
import torch

def _squared_distances(z1: torch.Tensor, z2: torch.Tensor, chunk_elems: int = 1 << 24) -> torch.Tensor:
    """``(l1, l2)`` squared Euclidean distances, computed as ``sum((a - b)^2)`` like a plain loop
    (so exact ties stay ties), in row chunks to bound memory."""
    z1, z2 = z1.detach().float(), z2.detach().float()
    rows = max(1, chunk_elems // max(1, z2.shape[0] * z2.shape[1]))
    return torch.cat([((z1[i:i + rows, None] - z2[None]) ** 2).sum(-1) for i in range(0, len(z1), rows)])


def _as_rows(z) -> np.ndarray:
    """``(l, D)`` embeddings (tensor on any device, or array) as a float32 NumPy array."""
    if isinstance(z, torch.Tensor):
        return z.detach().float().cpu().numpy()
    return np.asarray(z, dtype=np.float32)


def _expanded_distances(a: np.ndarray, b: np.ndarray) -> tuple:
    """``(l1, l2)`` squared distances ``|a|^2 + |b|^2 - 2 a.b`` of ``a (l1, D)`` and ``b (l2, D)``, and
    the squared norms ``(l1,)``, ``(l2,)``."""
    sq_a, sq_b = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    dist = a @ b.T
    dist *= -2
    dist += sq_a[:, None]
    dist += sq_b
    return dist, sq_a, sq_b


def _nearest_rows(dist: np.ndarray, sq_rows: np.ndarray, sq_cols: np.ndarray, rows: np.ndarray,
                  cols: np.ndarray) -> np.ndarray:
    """Index of the nearest column of every row of the expanded distances ``dist`` ``(l1, l2)``
    (``sq_rows``/``sq_cols``: squared norms of the ``rows (l1, D)``/``cols (l2, D)`` embeddings)."""
    nearest = dist.argmin(axis=1)
    index = np.arange(len(dist))
    best = dist[index, nearest]
    dist[index, nearest] = np.inf  # the runner-up, then put the best back
    runner_up = dist.min(axis=1)
    dist[index, nearest] = best
    unclear = np.flatnonzero(runner_up - best <= 1e-4 * (sq_rows + sq_cols.max()))
    if len(unclear):
        exact = _squared_distances(torch.from_numpy(rows[unclear]), torch.from_numpy(cols))
        nearest[unclear] = exact.argmin(dim=1).numpy()
    return nearest


def nearest_frames_both_ways(z1, z2) -> tuple:
    """``(NN_12 (l1,), NN_21 (l2,))``: for every frame of ``z1 (l1, D)`` its nearest frame of
    ``z2 (l2, D)`` and the other way round (first index on ties), from one distance matrix."""
    a, b = _as_rows(z1), _as_rows(z2)
    dist, sq_a, sq_b = _expanded_distances(a, b)
    return _nearest_rows(dist, sq_a, sq_b, a, b), _nearest_rows(dist.T.copy(), sq_b, sq_a, b, a)


def nearest_frames(z1, z2) -> torch.Tensor:
    """For every row of ``z1 (l1, D)`` the index ``(l1,)`` of its nearest row of ``z2 (l2, D)``
    (first index on ties), as the release's loop finds it."""
    a, b = _as_rows(z1), _as_rows(z2)
    dist, sq_a, sq_b = _expanded_distances(a, b)
    return torch.from_numpy(_nearest_rows(dist, sq_a, sq_b, a, b))


def alignment_error_of_matches(nn12: np.ndarray) -> float:
    """Mean ``|i - NN(i)| / l`` from the nearest frames ``(l,)`` already found (``nearest_frames``)."""
    length = len(nn12)
    return float(np.abs(np.arange(length) - nn12).sum()) / length / length


def _cycle_error(nn12: np.ndarray, nn21: np.ndarray) -> float:
    return alignment_error_of_matches(nn21[nn12])


def _ordered_pairs(nn12: np.ndarray) -> tuple:
    """``(C, D, T)``: of the ``T`` frame pairs ``i < j``, ``C`` with ``NN(i) < NN(j)`` and ``D`` with
    ``NN(i) > NN(j)`` (the rest are ties)."""
    length = len(nn12)
    if length < 2:
        raise ValueError("Kendall's tau needs at least two frames")
    upper = np.triu(nn12[None, :] - nn12[:, None], 1)
    return int(np.count_nonzero(upper > 0)), int(np.count_nonzero(upper < 0)), length * (length - 1) // 2


def _kendalls_tau(pairs: tuple) -> float:
    concordant, _, total = pairs
    return (concordant - (total - concordant)) / total


def _kendalls_tau_b(pairs: tuple, nn12: np.ndarray) -> float:
    """Tau-b of frame order (no ties) against ``NN``: ``(C - D) / sqrt(T (T - ties in NN))``, as
    ``scipy.stats.kendalltau`` computes it; 0.0 when every frame has the same match."""
    concordant, discordant, total = pairs
    counts = np.unique(nn12, return_counts=True)[1]
    tied = int((counts * (counts - 1) // 2).sum())
    if tied == total:
        return 0.0
    return (concordant - discordant) / float(np.sqrt(float(total) * (total - tied)))


def alignment_error(z1, z2) -> float:
    """Mean ``|i - NN(i)| / l`` over frames ``i`` of ``z1`` ``(l, D)`` matched into ``z2`` ``(l, D)``."""
    return alignment_error_of_matches(nearest_frames(z1, z2).numpy())


def cycle_error(z1, z2) -> float:
    """Mean ``|i - NN_21(NN_12(i))| / l``: how far a frame lands after a round trip through ``z2``."""
    return _cycle_error(*nearest_frames_both_ways(z1, z2))


def kendalls_tau(z1, z2) -> float:
    """The release's Kendall's tau: pairs ``i < j`` are concordant when ``NN(i) < NN(j)``,
    everything else (ties included) discordant; ``tau = (C - (T - C)) / T``."""
    return _kendalls_tau(_ordered_pairs(nearest_frames(z1, z2).numpy()))


def kendalls_tau_b(z1, z2) -> float:
    """scipy's Kendall's tau-b between frame order and nearest-frame order (ties handled, as
    alignment papers other than the release report it); 0.0 when every frame has the same match."""
    nn12 = nearest_frames(z1, z2).numpy()
    return _kendalls_tau_b(_ordered_pairs(nn12), nn12)


def alignment_metrics(z1, z2) -> dict:
    """``alignment_error``, ``cycle_error``, ``kendalls_tau`` and ``kendalls_tau_b`` of ``z1 (l, D)``
    against ``z2 (l, D)`` from one distance matrix (each equal to its function above)."""
    nn12, nn21 = nearest_frames_both_ways(z1, z2)
    pairs = _ordered_pairs(nn12)
    return {"alignment_error": alignment_error_of_matches(nn12), "cycle_error": _cycle_error(nn12, nn21),
            "kendalls_tau": _kendalls_tau(pairs), "kendalls_tau_b": _kendalls_tau_b(pairs, nn12)}
