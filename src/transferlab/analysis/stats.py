"""Confidence intervals and paired comparisons over seeds."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95


def mean_ci(values: Sequence[float], level: float = LEVEL) -> dict:
    """Mean and Student-t confidence interval. With one value the interval is unknown (NaN)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": 0}
    mean = float(v.mean())
    if n == 1:
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": 1}
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": n}


def verdict(ci: dict) -> str:
    """'better' or 'worse' only when the CI excludes 0; inside the noise it is a 'tie'."""
    if ci["n"] < 2 or not math.isfinite(ci["lo"]):
        return "inconclusive"
    if ci["lo"] > 0:
        return "better"
    if ci["hi"] < 0:
        return "worse"
    return "tie"


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """CI of a - b over the seeds both have (same seed = same subset and splits)."""
    seeds = sorted(set(a) & set(b))
    return mean_ci([a[s] - b[s] for s in seeds])
