"""Paired comparisons over seeds and their four verdicts, with error control.

A comparison of strategy A against B uses the paired differences of their accuracies over the seeds both
ran (one seed = one training subset, one head initialisation, the same splits).  Its verdict is:

- ``equivalent``: the difference lies inside ``±margin`` (two one-sided tests, TOST; the same as the
  1 - 2*alpha CI lying inside the margin).  The margin is the smallest difference that matters, so a
  difference shown to be smaller than it is equivalent even when it is also shown not to be 0;
- ``better`` / ``worse``: otherwise, the mean difference is not 0 (two-sided paired t-test);
- ``inconclusive``: neither, at the seeds run so far.  It comes with an estimate of how many seeds
  would likely decide it, from the observed mean and SD.

Error control, stated in the report:

- **Sequential looks.** A study may look at its results after each round of seeds (``Design.looks``,
  for example 3, 6, 10) and stop a comparison once it is decided.  The test's alpha is spent over the
  looks by the Kim-DeMets power function ``alpha * (n / n_max) ** rho``; each look is tested at its
  own share, and a comparison's p-value is ``min over looks of p_look / share_look`` (Bonferroni over
  looks).  That p-value is valid whatever the data does between looks, so looking early cannot raise
  the error rate; it is conservative, because it ignores the correlation between looks.
- **Multiplicity.** The comparisons at one target size form a family.  Holm's step-down adjusts their
  p-values, separately for "differs" and for "equivalent", so the chance of any false verdict in a
  family stays at most alpha.

A fixed design (``--seeds N``) is the special case of one look.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
MIN_SEEDS = 3  # fewer paired seeds never decide anything: two points give no usable spread
MAX_SEEDS_ESTIMATE = 200


@dataclass(frozen=True)
class Design:
    """When a study looks at its comparisons, and at which error rate and margin it decides them."""

    looks: tuple[int, ...] = (3,)  # cumulative seed counts at which verdicts are read
    alpha: float = 0.05  # family-wise error rate per target size
    margin: float = 0.01  # |difference| below this is "equivalent" (accuracy as a fraction: 0.01 = 1 pp)
    rho: float = 2.0  # Kim-DeMets spending exponent: larger keeps more alpha for the last look
    seed_order: tuple[int, ...] = ()  # the order the study runs seeds in (default: ascending)
    # Accuracy moves in steps of one example: the paired SD is never taken below one step, so a few seeds that
    # happen to agree exactly on a small split do not count as certainty.  Set by the study: 1 / split size.
    test_resolution: float = 0.0
    val_resolution: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "looks", tuple(sorted({int(n) for n in self.looks})))
        object.__setattr__(self, "seed_order", tuple(int(s) for s in self.seed_order))

    def rank(self, seeds) -> dict[int, int]:
        """Each seed's position in the study's run order: look k sees the seeds ranked below looks[k]."""
        order = {s: i for i, s in enumerate(self.seed_order)}
        rest = sorted(s for s in seeds if s not in order)
        return {**order, **{s: len(order) + i for i, s in enumerate(rest)}}

    def shares(self) -> list[float]:
        """The part of alpha spent at each look: alpha(t) = alpha * t^rho at information time t = n / n_max."""
        n_max = self.looks[-1]
        spent = [(n / n_max) ** self.rho for n in self.looks]
        return [b - a for a, b in zip([0.0, *spent[:-1]], spent)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> Design:
        d = dict(d or {})
        return cls(**{**d, "looks": tuple(d.get("looks", (3,))), "seed_order": tuple(d.get("seed_order", ()))})


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


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """CI of a - b over the seeds both have (same seed = same subset and splits)."""
    seeds = sorted(set(a) & set(b))
    return mean_ci([a[s] - b[s] for s in seeds])


def _tests(d: np.ndarray, margin: float, sd_floor: float = 0.0) -> tuple[float, float]:
    """(p that the mean is 0, two-sided; TOST p that |mean| >= margin) for paired differences ``d``."""
    n = len(d)
    if n < MIN_SEEDS:
        return 1.0, 1.0
    mean = float(d.mean())
    se = max(float(d.std(ddof=1)), sd_floor) / math.sqrt(n)
    if se == 0.0:  # identical differences on every seed: the sign is certain, the size exact
        return (0.0 if mean != 0 else 1.0), (0.0 if abs(mean) < margin else 1.0)
    t = stats.t(n - 1)
    p_diff = float(2 * t.sf(abs(mean) / se))
    p_low = float(t.sf((mean + margin) / se))  # H0: mean <= -margin
    p_high = float(t.cdf((mean - margin) / se))  # H0: mean >= +margin
    return p_diff, max(p_low, p_high)


def compare(a: dict[int, float], b: dict[int, float], design: Design, sd_floor: float = 0.0) -> dict:
    """One comparison a - b, read at every look the seeds reach; p-values before multiplicity.

    Look ``k`` sees the seeds the study runs first (``design.seed_order``), up to ``design.looks[k]``.
    """
    seeds = sorted(set(a) & set(b))
    rank = design.rank(seeds)
    d_all = {rank[s]: a[s] - b[s] for s in seeds}
    ci = mean_ci(list(d_all.values()))
    p_diff, p_eq, sign = 1.0, 1.0, 0.0
    last = max(d_all, default=-1)
    for n_look, share in zip(design.looks, design.shares()):
        d = np.array([v for r, v in d_all.items() if r < n_look])
        if len(d) >= MIN_SEEDS:
            pd_, pe = _tests(d, design.margin, sd_floor)
            if min(1.0, pd_ / share) < p_diff:
                p_diff, sign = min(1.0, pd_ / share), float(np.sign(d.mean()))
            p_eq = min(p_eq, min(1.0, pe / share))
        if n_look > last:
            break  # later looks hold no seed this comparison has
    return {**ci, "p_diff": p_diff, "p_equiv": p_eq, "sign": sign, "sd_floor": sd_floor}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (valid under any dependence)."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    adjusted, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def decide(comparisons: list[dict], design: Design) -> list[dict]:
    """Holm across one family, then each comparison's verdict (a new dict per comparison)."""
    adj_diff = holm([c["p_diff"] for c in comparisons])
    adj_eq = holm([c["p_equiv"] for c in comparisons])
    out = []
    undecided = sum(1 for pd_, pe in zip(adj_diff, adj_eq) if pd_ > design.alpha and pe > design.alpha)
    for c, pd_, pe in zip(comparisons, adj_diff, adj_eq):
        if pe <= design.alpha:
            v = "equivalent"
        elif pd_ <= design.alpha:
            v = "better" if c["sign"] > 0 else "worse"
        else:
            v = "inconclusive"
        row = {**c, "p_diff_adj": pd_, "p_equiv_adj": pe, "verdict": v}
        row["seeds_needed"] = seeds_needed(c, design, max(1, undecided)) if v == "inconclusive" else None
        out.append(row)
    return out


def seeds_needed(ci: dict, design: Design, family: int) -> int | None:
    """Seeds in all that would likely decide this comparison, if the observed mean and SD are the truth.

    The test is taken at the last look's share of alpha, Bonferroni over the ``family`` still open (the
    first step of Holm, so the estimate errs high).  None: not estimable (fewer than 2 seeds).
    """
    mean, sd = ci.get("mean", math.nan), ci.get("sd", math.nan)
    if not (math.isfinite(mean) and math.isfinite(sd)):
        return None
    sd = max(sd, ci.get("sd_floor", 0.0))
    if sd == 0:
        return MIN_SEEDS
    level = design.alpha * design.shares()[-1] / family
    for n in range(max(MIN_SEEDS, ci["n"] + 1), MAX_SEEDS_ESTIMATE + 1):
        se = sd / math.sqrt(n)
        if abs(mean) / se > stats.t.ppf(1 - level / 2, n - 1):
            return n
        if abs(mean) < design.margin and (design.margin - abs(mean)) / se > stats.t.ppf(1 - level, n - 1):
            return n
    return MAX_SEEDS_ESTIMATE + 1  # more than this: the difference is too close to the margin to resolve


def seeds_phrase(n: int | None) -> str:
    if n is None:
        return "needs at least 3 seeds to be decided"
    if n > MAX_SEEDS_ESTIMATE:
        return f"would need more than {MAX_SEEDS_ESTIMATE} seeds to decide (too close to the margin)"
    return f"about {n} seeds in all would likely decide it"
