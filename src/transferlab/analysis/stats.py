"""Paired comparisons over seeds, their four verdicts, and the one interval that shows each verdict.

A comparison of strategy A against B uses the paired differences of their accuracies over the seeds both
ran (one seed = one training subset, one head initialisation, the same splits).  Every comparison gets one
**simultaneous** confidence interval, and its verdict is read from that interval alone:

- ``better`` / ``worse``: the interval lies above / below 0;
- ``equivalent``: the interval lies inside ``±margin``, the smallest difference that matters (a difference
  shown to be smaller than the margin is equivalent even when it is also shown not to be 0);
- ``inconclusive``: neither.  It comes with the seeds that would decide it with 80% power (``seeds_needed``).

Error control (stated in the report).  A *family* is a set of comparisons read together at one target size (the
question a user asks is "at my data size"): every strategy against scratch at that size; every strategy against the
best of the others at that size (the race, ``best_of_others``).  A sentence that combines k sizes rests on k
families, so its promise is k times alpha (the report says so).  A study
may read its comparisons at several *looks* (cumulative seed counts, e.g. 3, 6, 10) and stop a comparison
once decided.  Alpha is spent over the looks by the Kim-DeMets function ``alpha * (n / n_max) ** rho``; the
interval of one comparison at look ``k`` has level ``1 - alpha * share_k / m`` for a family of ``m``.  By the
union bound every interval of the family, at every look, covers its true difference with probability at
least ``1 - alpha``, whatever the data does and whenever the study stopped.  When they all cover, no verdict
is false: not a false better or worse (the sign is right) and not a false equivalent.  So the chance of any
false verdict of any kind in a family is at most alpha, under any dependence between comparisons.

The verdict, the mean and the interval all come from one look: the last look the comparison's seeds reach.
A fixed design (``--seeds N``) is the special case of one look.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum

import numpy as np
from scipy import stats

LEVEL = 0.95
MIN_SEEDS = 3  # fewer paired seeds never decide anything: two points give no usable spread
MAX_SEEDS_ESTIMATE = 200
POWER = 0.8  # "seeds needed" is the seed count at which a comparison is decided with this probability


class Verdict(str, Enum):
    """Compares and serialises as its string; prints as it too (Python 3.10 has no StrEnum)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    BETTER = "better"
    WORSE = "worse"
    EQUIVALENT = "equivalent"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Design:
    """When a study looks at its comparisons, and at which error rate and margin it decides them."""

    looks: tuple[int, ...] = (3,)  # cumulative seed counts at which verdicts are read
    alpha: float = 0.05  # family-wise error rate of the verdicts of one family
    margin: float = 0.01  # |difference| below this is "equivalent" (accuracy as a fraction: 0.01 = 1 pp)
    # Kim-DeMets spending exponent: larger keeps more alpha for the last look.  3 was chosen by simulation
    # (benchmarks/bench_promise.py): at looks 3/6/10 a first look at 3 seeds decides only huge gaps whatever rho is
    # (Student's t at 2 degrees of freedom), so alpha spent there is mostly wasted.
    rho: float = 3.0
    seed_order: tuple[int, ...] = ()  # the order the study runs seeds in (default: ascending)
    # Accuracy moves in steps of one example: the paired SD is never taken below one step, so a few seeds that
    # happen to agree exactly on a small split do not count as certainty.  Set by the study: 1 / split size.
    test_resolution: float = 0.0
    val_resolution: float = 0.0
    # Examples in the test split when it is one for the whole study (0: redrawn per seed, or unknown).  The
    # intervals of test comparisons then add its per-example term (``test_variance``).  Set by the study.
    test_examples: int = 0

    def __post_init__(self):
        object.__setattr__(self, "looks", tuple(sorted({int(n) for n in self.looks})))
        object.__setattr__(self, "seed_order", tuple(int(s) for s in self.seed_order))

    def rank(self, seeds) -> dict[int, int]:
        """Each seed's position in the study's run order: look k sees the seeds ranked below looks[k]."""
        order = {s: i for i, s in enumerate(self.seed_order)}
        rest = sorted(s for s in seeds if s not in order)
        return {**order, **{s: len(order) + i for i, s in enumerate(rest)}}

    def seeds(self, start: int, stop: int) -> list[int]:
        """The seeds the study runs in positions ``start`` to ``stop`` (its listed seeds, or 0, 1, 2, ...)."""
        if self.seed_order:
            return list(self.seed_order[start:stop])
        return list(range(start, stop))

    def shares(self) -> list[float]:
        """The part of alpha spent at each look: alpha(t) = alpha * t^rho at information time t = n / n_max."""
        n_max = self.looks[-1]
        spent = [(n / n_max) ** self.rho for n in self.looks]
        return [b - a for a, b in zip([0.0, *spent[:-1]], spent)]

    def level(self, look: int, family: int) -> float:
        """The two-sided error rate of one interval at look index ``look`` in a family of ``family``."""
        return self.alpha * self.shares()[look] / max(0.5, family)  # 0.5: a one-sided bound's two-sided equivalent

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


def test_variance(mean_a: float, mean_b: float, diff: float, n_test: int) -> float:
    """The test-sampling variance of a mean paired difference read on one shared test split of ``n_test`` examples.

    McNemar-type: with Delta_e the seeds' mean of (correct_a - correct_b) on example e, the mean difference is
    mean_e(Delta_e), whose variance over draws of the test split is var(Delta_e) / N = (E[Delta_e^2] - d^2) / N.  Since
    |Delta_e| <= 1, E[Delta_e^2] <= E|Delta_e| <= P(a and b disagree on e) <= err_a + err_b.  So this bound needs only
    the two accuracies: it is tight when the strategies' errors fall on different examples and conservative when
    they share them."""
    if not n_test or not all(math.isfinite(x) for x in (mean_a, mean_b, diff)):
        return 0.0
    return max(0.0, min(1.0, (1 - mean_a) + (1 - mean_b)) - diff ** 2) / n_test


def example_variance(rows_a: list, rows_b: list) -> float | None:
    """The per-example term from per-example correctness on the shared test split (a list per seed, same order):
    Var_e(mu_e) / N, with mu_e the seeds' expected (correct_a - correct_b) on example e.  The observed per-example
    means scatter by Var_e(mu_e) plus their own seed noise (mean_e s_e^2 / n), so that noise is taken off:
    a random-effects estimate, floored at 0.  None: fewer than 2 seeds, or the rows do not line up."""
    n = len(rows_a)
    if n < 2 or len(rows_b) != n or len({len(r) for r in (*rows_a, *rows_b)}) != 1:
        return None
    d = np.asarray(rows_a, dtype=float) - np.asarray(rows_b, dtype=float)  # seeds x examples
    n_test = d.shape[1]
    if n_test < 2:
        return None
    between = float(d.mean(axis=0).var(ddof=1))
    within = float(d.var(axis=0, ddof=1).mean()) / n
    return max(0.0, between - within) / n_test


def compare(a: dict[int, float], b: dict[int, float], design: Design, sd_floor: float = 0.0,
            test_examples: int = 0, rows: tuple[dict, dict] | None = None) -> dict:
    """The paired differences a - b at the last look their shared seeds reach (before the family is known).

    Look ``k`` sees the seeds the study runs first (``design.seed_order``), up to ``design.looks[k]``; seeds
    beyond the last look are not read.  Returns the look's index, its differences and their summary.
    ``test_examples``: the values are accuracies on one shared test split of that many examples, so the interval
    adds its per-example term (``test_var``): from per-example correctness when ``rows`` (seed -> 0/1 list, for a
    and for b) has it for every seed read (``example_variance``), else the bound from the accuracies alone
    (``test_variance``).
    """
    seeds = sorted(set(a) & set(b))
    rank = design.rank(seeds)
    ranked = sorted((rank[s], s) for s in seeds if rank[s] < design.looks[-1])
    look = next((i for i, n in enumerate(design.looks) if ranked and ranked[-1][0] < n), 0)
    d = [a[s] - b[s] for _, s in ranked]
    out = {**mean_ci(d), "look": look, "diffs": d, "sd_floor": sd_floor}
    if test_examples and d:
        used = [s for _, s in ranked]
        per_example = None
        if rows is not None and all(rows[0].get(s) and rows[1].get(s) for s in used):
            per_example = example_variance([rows[0][s] for s in used], [rows[1][s] for s in used])
        out["test_var"] = per_example if per_example is not None else test_variance(
            float(np.mean([a[s] for s in used])), float(np.mean([b[s] for s in used])), out["mean"], test_examples)
        out["test_term"] = "per example" if per_example is not None else "bound"
    return out


def spread(c: dict, n: int | None = None) -> tuple[float, float]:
    """(standard error, degrees of freedom) of comparison ``c``'s mean at ``n`` seeds (default: its own): the seeds'
    SD (floored) over sqrt(n), plus the test split's per-example term when there is one, with Welch-Satterthwaite
    degrees of freedom (the per-example term counts as known: it is a bound from N test examples)."""
    n = c["n"] if n is None else n
    sd = max(c["sd"], c.get("sd_floor") or 0.0)
    seeds_var, test_var = sd * sd / n, c.get("test_var") or 0.0
    if not test_var:
        return math.sqrt(seeds_var), n - 1
    df = (seeds_var + test_var) ** 2 / (seeds_var ** 2 / (n - 1)) if seeds_var > 0 else 1e6
    return math.sqrt(seeds_var + test_var), min(df, 1e6)


def interval(c: dict, design: Design, family: int) -> tuple[float, float, float]:
    """(lo, hi, level) of comparison ``c``'s simultaneous interval in a family of ``family`` comparisons."""
    alpha = design.level(c["look"], family)
    if c["n"] < MIN_SEEDS:
        return -math.inf, math.inf, 1 - alpha
    se, df = spread(c)
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return c["mean"] - half, c["mean"] + half, 1 - alpha


def verdict_of(lo: float, hi: float, margin: float) -> Verdict:
    """The verdict an interval shows: inside the margin, above 0, below 0, or none of these."""
    if -margin < lo and hi < margin:
        return Verdict.EQUIVALENT
    if lo > 0:
        return Verdict.BETTER
    if hi < 0:
        return Verdict.WORSE
    return Verdict.INCONCLUSIVE


def decide(comparisons: list[dict], design: Design, family: int | None = None) -> list[dict]:
    """One family's verdicts: each comparison's simultaneous interval and the verdict it shows (new dicts).

    ``family``: the number of intervals the family holds, when more than those shown (the race shows each strategy
    against the leader, but the leader was chosen on the same numbers, so its family is every pair).

    ``lo`` and ``hi`` are the simultaneous interval (its level in ``level``); ``ci95`` keeps the plain
    per-comparison 95% interval of the same seeds, for a reader who wants it, clearly named.
    """
    m = max(len(comparisons), family or 0)
    out = []
    for c in comparisons:
        lo, hi, level = interval(c, design, m)
        v = verdict_of(lo, hi, design.margin)
        row = {k: x for k, x in c.items() if k != "diffs"}
        plain = mean_ci(c["diffs"])
        row.update(lo=lo if math.isfinite(lo) else math.nan, hi=hi if math.isfinite(hi) else math.nan, level=level,
                   coverage=1 - design.alpha, family=m, verdict=v, ci95=[plain["lo"], plain["hi"]])
        row["seeds_needed"] = seeds_needed(c, design, m) if v == Verdict.INCONCLUSIVE else None
        out.append(row)
    return out


def power(n: int, mean: float, sd: float, margin: float, alpha: float, test_var: float = 0.0) -> float:
    """The chance that ``n`` paired seeds give an interval (two-sided, error ``alpha``) that decides, if the true
    difference is ``mean`` with SD ``sd`` (and the shared test split adds ``test_var``): that lies off 0 (better,
    worse) or inside ±margin (equivalent).

    Noncentral t.  The two ways to decide overlap, so the larger of the two chances is a lower bound; for the
    equivalence side, the usual bound P(both one-sided tests reject) >= 1 - (misses of each).
    """
    if n < MIN_SEEDS:
        return 0.0
    se, df = spread({"n": n, "sd": sd, "test_var": test_var})
    root = 1 / se
    crit = float(stats.t.ppf(1 - alpha / 2, df))

    def above(nc: float) -> float:  # P(T > crit), T noncentral t; scipy returns NaN deep in a tail
        p = float(stats.nct.sf(crit, df, nc))
        return p if math.isfinite(p) else float(nc > crit)

    off_zero = above(abs(mean) * root) + above(-abs(mean) * root)
    if abs(mean) >= margin:
        return min(1.0, off_zero)
    low = above((mean + margin) * root)  # the interval's low end above -margin
    high = above((margin - mean) * root)  # its high end below +margin (by symmetry of -T)
    return min(1.0, max(off_zero, low + high - 1))


def seeds_needed(c: dict, design: Design, family: int) -> int | None:
    """Seeds in all that would decide this comparison with ``POWER`` (80%), if its observed mean and SD were the
    truth, tested at the last look's share of alpha in a family of ``family``.  None: fewer than 2 seeds."""
    mean, sd = c.get("mean", math.nan), c.get("sd", math.nan)
    if not (math.isfinite(mean) and math.isfinite(sd)):
        return None
    sd = max(sd, c.get("sd_floor") or 0.0, 1e-9)
    alpha = design.level(len(design.looks) - 1, family)
    test_var = c.get("test_var") or 0.0
    enough = lambda n: power(n, mean, sd, design.margin, alpha, test_var) >= POWER  # noqa: E731 (grows with n)
    lo = max(MIN_SEEDS, c["n"] + 1)
    if enough(lo):
        return lo
    hi = lo
    while not enough(hi):  # double until enough, then bisect: a few dozen power evaluations, not hundreds
        if hi > MAX_SEEDS_ESTIMATE:
            return MAX_SEEDS_ESTIMATE + 1  # more than this: the difference is too close to the margin to resolve
        lo, hi = hi, min(2 * hi, MAX_SEEDS_ESTIMATE + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi if hi <= MAX_SEEDS_ESTIMATE else MAX_SEEDS_ESTIMATE + 1


def more_minutes(acc_rows: list[dict], labels: list[str], n_train, needed: int | None,
                 fresh: bool = False) -> float | None:
    """Training minutes that ``needed`` seeds in all would add for configurations ``labels`` at ``n_train``: the
    seeds each is missing (every one of them in a ``fresh`` study) times its mean trial time (one process; workers
    share it)."""
    if not needed:
        return None
    rows = {r["label"]: r for r in acc_rows if r["n_train"] == n_train}
    if not all(lab in rows for lab in labels):
        return None
    return sum(max(0, needed - (0 if fresh else len(rows[lab]["seeds"]))) * rows[lab]["wall_s"] for lab in labels) / 60


def seeds_phrase(n: int | None, minutes: float | None = None) -> str:
    """'about 14 seeds (about 3 min more) would decide it: rerun with --max-seeds 14' (into a new folder: a study's
    cap is part of its design, and raising it after a look would spend alpha twice)."""
    if n is None:
        return "needs at least 3 seeds to be decided"
    if n > MAX_SEEDS_ESTIMATE:
        return (f"would need more than {MAX_SEEDS_ESTIMATE} seeds to decide (too close to the margin, or beyond what the "
                "test split's size can resolve)")
    more = f" (about {minutes:.0f} min more)" if minutes is not None and minutes >= 1 else \
        " (under a minute more)" if minutes is not None else ""
    return f"about {n} seeds{more} would decide it with {POWER:.0%} power: rerun with --max-seeds {n} into a new folder"


def seeds_hint(c, verdict: str) -> str:
    """' (~14 seeds)' beside an inconclusive verdict in a table (``c`` a Comparison): what would decide it."""
    if verdict != "inconclusive" or not c.seeds_needed:
        return ""
    return f" (~{c.seeds_needed} seeds)" if c.seeds_needed <= MAX_SEEDS_ESTIMATE else f" (>{MAX_SEEDS_ESTIMATE} seeds)"


def interval_phrase(c: dict) -> str:
    """'+1.9 pp (95% simultaneous CI +0.3 to +3.5 pp)': the interval the verdict was read from, named as such."""
    if not math.isfinite(c.get("lo", math.nan)):
        return f"{100 * c['mean']:+.1f} pp (too few seeds for an interval)" if math.isfinite(c.get("mean", math.nan)) \
            else "no shared seeds"
    name = f"{100 * c['coverage']:.0f}% simultaneous CI" if c.get("coverage") else "95% CI"
    return f"{100 * c['mean']:+.1f} pp ({name} {100 * c['lo']:+.1f} to {100 * c['hi']:+.1f} pp)"


def _bounds(c: dict, design: Design, family: int) -> tuple[float, float]:
    """(lower, upper) one-sided bounds of comparison ``c``, each at error ``design.level(look, family)``."""
    if c["n"] < MIN_SEEDS:
        return -math.inf, math.inf
    se, df = spread(c)
    half = float(stats.t.ppf(1 - design.level(c["look"], family), df)) * se
    return c["mean"] - half, c["mean"] + half


def best_of_others(values: dict, design: Design, resolution: float = 0.0) -> dict:
    """Multiple comparisons with the best (Hsu's MCB), paired over the seeds each pair shares.

    For every candidate i, an interval for mu_i - max over j != i of mu_j: ``hi`` = max(0, min_j U_ij) and
    ``lo`` = min(0, min_j L_ij), with U and L one-sided bounds of the paired difference i - j at error
    alpha / (K - 1) each (spent over the looks).  All K intervals cover together with probability 1 - alpha: only the
    true best's K - 1 comparisons must hold (Hsu 1996, sec. 4.1.1; unequal seeds and SDs keep it, since each pair
    has its own bound).  Verdicts, as claims about that difference:

    - ``worse``: hi is 0 (every U below 0 for some j): "not better than the best of the others" (it may tie it);
    - ``equivalent``: the interval inside ±margin: within the margin of the best of the others;
    - ``better``: lo above 0: the best, ahead of every other;
    - ``inconclusive``: none of these.

    ``mean`` is min_j of the paired mean differences (the estimate of mu_i - max_j mu_j); ``seeds_needed`` is read
    from the pair with the candidate the others' estimate names best, at the same family.
    """
    out = {}
    k = len(values)
    family = max(1, k - 1)
    for i, vi in values.items():
        pairs = {j: compare(vi, vj, design, resolution) for j, vj in values.items() if j != i}
        shared = {j: c for j, c in pairs.items() if c["n"] > 0}  # a pair with no shared seed bounds nothing
        if not shared:
            out[i] = {"mean": math.nan, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": 0, "look": 0,
                      "level": 1 - design.level(0, family), "coverage": 1 - design.alpha, "family": family,
                      "verdict": Verdict.INCONCLUSIVE, "ci95": [math.nan, math.nan], "seeds_needed": None, "versus": None}
            continue
        bounds = {j: _bounds(c, design, family) for j, c in pairs.items()}  # no shared seed: (-inf, inf)
        upper, lower = min(u for _, u in bounds.values()), min(lo for lo, _ in bounds.values())
        nearest = min(shared, key=lambda j: (shared[j]["mean"], str(j)))  # the best of the others, as estimated
        c = shared[nearest]
        lo, hi = min(lower, 0.0), max(upper, 0.0)
        if -design.margin < lo and hi < design.margin:
            v = Verdict.EQUIVALENT
        elif upper < 0:
            v = Verdict.WORSE
        elif lower > 0:
            v = Verdict.BETTER
        else:
            v = Verdict.INCONCLUSIVE
        plain = mean_ci(c["diffs"])
        # A difference of accuracies lies in [-1, 1]: an unbounded side (a pair under 3 seeds) reads as that end, so
        # a verdict always has the interval it was read from beside it.
        out[i] = {"mean": c["mean"], "lo": max(-1.0, lo), "hi": min(1.0, hi),
                  "sd": c["sd"], "n": c["n"], "look": c["look"], "sd_floor": c["sd_floor"],
                  "level": 1 - design.level(c["look"], family), "coverage": 1 - design.alpha, "family": family,
                  "verdict": v, "ci95": [plain["lo"], plain["hi"]], "versus": nearest,
                  # one-sided at alpha / (K - 1) is two-sided at twice that: half the family in the power calculation
                  "seeds_needed": seeds_needed(c, design, family / 2) if v == Verdict.INCONCLUSIVE else None}
    return out
