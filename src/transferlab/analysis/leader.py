"""The one rule that chooses a leader among candidates scored over seeds: the race's leader, a source's best
transfer configuration, and the leader among sources all come from ``leader``.

Candidates may have run different numbers of seeds: a sequential study stops a configuration once its question is
decided, so a strong one can stop at 3 seeds while a mediocre one runs to 10.  A mean over each candidate's own
seeds would compare different seeds; a sum of pairwise paired differences would let the seeds that many stopped
candidates share outvote the seeds that only the strongest ran.  So the score is the candidate's effect in an
additive model, value = candidate effect + seed effect + noise, fitted by least squares over every value: each seed's
difficulty is estimated once from every candidate that ran it, and two candidates that ran the same seeds are
ordered by their mean paired difference on those seeds, however many others stopped early.  With every candidate
on every seed the effects order the candidates as their plain means do.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np


def _components(values: dict) -> list[list]:
    """Candidates grouped by shared seeds (two candidates are linked when they ran a seed in common)."""
    left, out = list(values), []
    while left:
        group = [left.pop(0)]
        seeds = set(values[group[0]])
        grew = True
        while grew:
            linked = [c for c in left if seeds & set(values[c])]
            grew = bool(linked)
            for c in linked:
                left.remove(c)
                group.append(c)
                seeds |= set(values[c])
        out.append(group)
    return out


def _effects(values: dict, cands: list) -> dict:
    """Least-squares candidate effects of one connected group, shifted to average the group's plain means."""
    seeds = sorted({s for c in cands for s in values[c]})
    col = {s: len(cands) + i for i, s in enumerate(seeds)}
    rows, y = [], []
    for i, c in enumerate(cands):
        for s, v in values[c].items():
            x = np.zeros(len(cands) + len(seeds))
            x[i], x[col[s]] = 1.0, 1.0
            rows.append(x)
            y.append(v)
    if not rows:
        return {c: 0.0 for c in cands}
    # Seed effects are defined only up to a shift the candidates absorb; within a connected group that shift is the
    # same for every candidate, so their differences are exact.  The group is then placed by its plain means.
    coef = np.linalg.lstsq(np.asarray(rows), np.asarray(y, dtype=float), rcond=None)[0][:len(cands)]
    means = [float(np.mean(list(values[c].values()))) for c in cands if values[c]]
    return {c: float(e - coef.mean() + (np.mean(means) if means else 0.0)) for c, e in zip(cands, coef)}


def paired_scores(values: dict[Hashable, dict[int, float]]) -> dict[Hashable, float]:
    """Each candidate's effect in the additive model candidate + seed, centred on the candidates' mean.

    Candidates connected through shared seeds are ordered exactly by the model; a group that shares no seed with
    the rest (rare: scratch links every configuration of a study) is placed by its plain means."""
    effects: dict = {}
    for group in _components(values):
        effects.update(_effects(values, group))
    centre = float(np.mean(list(effects.values()))) if effects else 0.0
    return {c: effects[c] - centre for c in values}


def leader(values: dict[Hashable, dict[int, float]], tie: Callable[[Hashable], object] = lambda _: 0) -> Hashable:
    """The candidate with the best effect; ``tie`` breaks exact ties (larger wins), then the name's order.

    Not the order listed: records arrive in the order trials finished, which parallel workers change, and the
    report rebuilt from trials.jsonl must name the leader the study named."""
    scores = paired_scores(values)
    order = sorted(values, key=lambda c: (type(c).__name__, c if isinstance(c, (int, float)) else str(c)))
    return max(order, key=lambda c: (round(scores[c], 9), tie(c), -order.index(c)))
