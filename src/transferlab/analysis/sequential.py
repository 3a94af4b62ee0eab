"""A sequential study: seeds in rounds, only where the answer is still open.

After each round the verdicts are read (at the design's looks, so reading early costs no error
rate; see ``stats``) and the next round runs only the configurations whose question is still open:

- a strategy whose comparison with scratch is inconclusive, unless it is out of the race;
- a strategy not yet separated from the validation leader (a contender), and then the leader too;
- scratch, while any comparison with it is still open.

A strategy decided worse than the validation leader is out of the race: it gets no more seeds even
if its comparison with scratch is open (that verdict then stays inconclusive, and says so).

Futility: a comparison whose estimated seeds to decide (at the observed mean and SD) exceed
``FUTILITY`` times the last look gets no more seeds either; it stays inconclusive with that estimate.
Stopping for futility never raises the false-verdict rate, it only gives up power where the budget
could not buy it.
"""
from __future__ import annotations

from collections.abc import Callable

from transferlab.analysis.gain import SCRATCH, gains, race
from transferlab.analysis.stats import Design

FUTILITY = 2.0  # give up on a comparison that would need more than this many times max_seeds


def _hopeless(c: dict, design: Design) -> bool:
    needed = c.get("seeds_needed")
    return needed is not None and needed > FUTILITY * design.looks[-1]


def seed_rounds(first: int, max_seeds: int) -> list[int]:
    """Cumulative seed counts per round: ``first``, then doubling, capped at ``max_seeds`` (3, 6, 10)."""
    looks = [min(first, max_seeds)]
    while looks[-1] < max_seeds:
        looks.append(min(2 * looks[-1], max_seeds))
    return looks


def open_configs(records: list[dict], design: Design) -> set[tuple[str, object]]:
    """(label, n_train) pairs that need more seeds."""
    out: set = set()
    gain = {(g["label"], g["n_train"]): g for g in gains(records, design)}
    for size in race(records, design):
        n, leader = size["n_train"], size["leader"]
        vs = {c["label"]: c for c in size["vs_leader"]}
        out_of_race = {lab for lab, c in vs.items() if c["verdict"] == "worse"}
        contenders = {lab for lab, c in vs.items() if c["verdict"] == "inconclusive" and not _hopeless(c, design)}
        undecided = {lab for (lab, m), g in gain.items()
                     if m == n and g["verdict"] == "inconclusive" and not _hopeless(g["gain"], design)} - out_of_race
        need = undecided | contenders | ({leader} if contenders else set())
        if undecided or SCRATCH in need:
            need.add(SCRATCH)
        out |= {(lab, n) for lab in need}
    return out


def run_sequential(looks: list[int], design: Design,
                   run_round: Callable[[list[int], set | None], list[dict]]) -> tuple[list[dict], list[dict]]:
    """Drive the rounds. ``run_round(seeds, only)`` runs those seeds for the ``only`` configurations (all when
    None) and returns the finished records.  Returns (records, one summary per round run)."""
    records: list[dict] = []
    rounds: list[dict] = []
    start = 0
    for i, n in enumerate(looks):
        only = None if i == 0 else open_configs(records, design)
        if only is not None and not only:
            break
        seeds = list(range(start, n))
        records.extend(run_round(seeds, only))
        rounds.append({"seeds": seeds, "configs": None if only is None else sorted([lab, str(m)] for lab, m in only)})
        start = n
    return records, rounds
