"""The one rule that chooses a leader among candidates scored over seeds: the race's leader, a source's best
transfer configuration, and the leader among sources all come from ``leader``.

Candidates may have run different numbers of seeds: a sequential study stops a configuration once its question is
decided, so a strong one can stop at 3 seeds while a mediocre one runs to 10.  A mean over each candidate's own
seeds would then compare different seeds (and would be fair only between candidates that ran equally many).  So
every pair is compared on the seeds both ran, as a paired difference: a candidate's score is the sum of its mean
paired differences against every other.  With equal seeds this is the plain mean's order; with unequal seeds the
seed count has no say.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable

import numpy as np


def paired_scores(values: dict[Hashable, dict[int, float]]) -> dict[Hashable, float]:
    """Each candidate's sum over the others of mean(own - other) on the seeds the two share (0 when none)."""
    out = {}
    for a, va in values.items():
        total = 0.0
        for b, vb in values.items():
            shared = sorted(set(va) & set(vb))
            if b != a and shared:
                total += float(np.mean([va[s] - vb[s] for s in shared]))
        out[a] = total
    return out


def leader(values: dict[Hashable, dict[int, float]], tie: Callable[[Hashable], object] = lambda _: 0) -> Hashable:
    """The candidate with the best paired score; ``tie`` breaks exact ties (larger wins), then the name's order.

    Not the order listed: records arrive in the order trials finished, which parallel workers change, and the
    report rebuilt from trials.jsonl must name the leader the study named."""
    scores = paired_scores(values)
    order = sorted(values, key=lambda c: (type(c).__name__, c if isinstance(c, (int, float)) else str(c)))
    return max(order, key=lambda c: (round(scores[c], 12), tie(c), -order.index(c)))
