"""Motion easing: smooth starts and stops between key poses."""
from typing import Sequence

import numpy as np


def smoothstep(s: np.ndarray) -> np.ndarray:
    """``3 s^2 - 2 s^3`` of ``s`` clipped to [0, 1]: zero velocity at both ends."""
    s = np.clip(s, 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


def piecewise(s: np.ndarray, knots: Sequence[float], points: Sequence[np.ndarray]) -> np.ndarray:
    """Move smoothly through ``points (K, D)``, arriving at ``knots (K,)``, sampled at times ``s (F,)``;
    returns ``(F, D)`` (the first point before the first knot)."""
    out = np.repeat(np.asarray(points[0])[None], len(s), axis=0).astype(np.float64)
    for (t0, t1), (a, b) in zip(zip(knots[:-1], knots[1:]), zip(points[:-1], points[1:])):
        w = smoothstep((s - t0) / max(t1 - t0, 1e-6))[:, None]
        out = np.where((s >= t0)[:, None], a + (b - a) * w, out)
    return out
