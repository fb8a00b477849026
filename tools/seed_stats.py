"""Statistics over seeds for the comparison tools: mean, spread and a paired t-test of two models."""
from typing import Dict, Sequence

import numpy as np
from scipy.stats import ttest_rel


def summarise(values: Sequence[float]) -> Dict:
    """Mean, sample standard deviation, range and the values themselves."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max()), "values": [float(v) for v in arr]}


def paired(baseline: Sequence[float], other: Sequence[float]) -> Dict:
    """Per-seed differences (other - baseline): their mean, sample standard deviation and the
    two-sided paired t-test's p-value (1 when there is one seed or no spread beyond rounding: the
    t-test of a constant shift is ill-posed and scipy would return a meaningless tiny p)."""
    diff = np.asarray(other, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    spread = len(diff) > 1 and np.ptp(diff) > 1e-9 * max(1.0, float(np.abs(diff).max()))
    p_value = float(ttest_rel(other, baseline).pvalue) if spread else 1.0
    return {"mean_difference": float(diff.mean()), "std_difference": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
            "differences": diff.tolist(), "p_value": p_value}


def format_p(p_value: float) -> str:
    """A p-value for a table: two decimals, or "< 0.01" where two decimals would read 0.00."""
    return "< 0.01" if p_value < 0.005 else f"{p_value:.2f}"
