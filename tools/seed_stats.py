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
    two-sided paired t-test's p-value (1 when there is one seed or no spread)."""
    diff = np.asarray(other, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    p_value = float(ttest_rel(other, baseline).pvalue) if len(diff) > 1 and diff.std() > 0 else 1.0
    return {"mean_difference": float(diff.mean()), "std_difference": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
            "differences": diff.tolist(), "p_value": p_value}
