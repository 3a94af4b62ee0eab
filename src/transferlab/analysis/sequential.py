"""A sequential study: seeds in rounds, only where the answer is still open.

After each round the verdicts are read (at the design's looks, so reading early costs no error
rate; see ``stats``) and the next round runs only the configurations whose question is still open.  Every
verdict read here is on validation (the held-out half), never on test: the test split steers nothing.

- a strategy whose comparison with scratch (on validation) is inconclusive and decidable within the cap, or
  decided at the first look (its test interval at 3 seeds is too wide to read);
- a strategy not yet separated from the validation leader (a contender), and then the leader too;
- scratch, while any comparison with it is still open.

A strategy decided "not better than the best of the others" is out of the race, but its comparison with scratch
still gets seeds while it is open and the cap can decide it: "did transfer help?" is the question every
configuration answers, and a comparison stopped at 3 seeds keeps an interval too wide to read.

After the last look, the leader at each size (and scratch) gets the seeds it is missing, once (``short_leaders``).

Futility: a comparison whose estimated seeds to decide (at the observed mean and SD) exceed the cap (the last
look; twice the cap at the first look, where the SD comes from 3 values) gets no more seeds; it stays inconclusive and says how many seeds would decide it.  So a study of equal
arms whose noise puts "equivalent" out of reach costs little more than its first look.  Stopping for futility
never raises the false-verdict rate, it only gives up power where the cap could not buy it.
"""
from __future__ import annotations

from collections.abc import Callable

from transferlab.analysis.gain import SCRATCH, by_config, gains, race
from transferlab.analysis.stats import Design, Verdict

FUTILITY = 1.0  # give up on a comparison that would need more than this many times max_seeds
# ... but at the first look the SD comes from 3 values (its upper 95% limit is 4.4 times the estimate), so a
# comparison is given up there only when it would need more than twice the cap.
FUTILITY_FIRST = 2.0


def _hopeless(c: dict, design: Design) -> bool:
    needed = c.get("seeds_needed")
    factor = FUTILITY_FIRST if c.get("look", 0) == 0 and len(design.looks) > 1 else FUTILITY
    return needed is not None and needed > factor * design.looks[-1]


def _open(g: dict, design: Design) -> bool:
    """A comparison with scratch that wants more seeds: inconclusive on validation and decidable within the cap, or
    decided on validation at the first look of several.  The test interval is read at the look the seeds reach, and
    at 3 seeds (Student's t at 2 degrees of freedom, a small share of alpha) it is too wide to read: a configuration
    decided that early gets the second round, so the number a user reads is one that can decide."""
    if g["verdict"] == Verdict.INCONCLUSIVE:
        return not _hopeless(g["gain"], design)
    return len(design.looks) > 1 and g["gain"]["look"] == 0


def seed_rounds(first: int, max_seeds: int) -> list[int]:
    """Cumulative seed counts per round: ``first``, then doubling, capped at ``max_seeds`` (3, 6, 10)."""
    looks = [min(first, max_seeds)]
    while looks[-1] < max_seeds:
        looks.append(min(2 * looks[-1], max_seeds))
    return looks


def open_configs(records: list[dict], design: Design) -> set[tuple[str, object]]:
    """(label, n_train) pairs that need more seeds.  Read on validation only (the race, and the comparisons with
    scratch on the held-out validation score): the test split decides nothing, not even where seeds go."""
    out: set = set()
    gain = {(g["label"], g["n_train"]): g for g in gains(records, design, on="val")}
    for size in race(records, design):
        n, leader = size["n_train"], size["leader"]
        vs = {c["label"]: c for c in size["vs_leader"]}
        contenders = {lab for lab, c in vs.items() if c["verdict"] == Verdict.INCONCLUSIVE and not _hopeless(c, design)}
        undecided = {lab for (lab, m), g in gain.items() if m == n and _open(g, design)}
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
        seeds = design.seeds(start, n)  # the study's listed seeds in their order, or 0, 1, 2, ...
        records.extend(run_round(seeds, only))
        rounds.append({"seeds": seeds, "configs": None if only is None else sorted([lab, str(m)] for lab, m in only)})
        start = n
    for (lab, m), missing in short_leaders(records, design).items():
        records.extend(run_round(missing, {(lab, m)}))
        rounds.append({"seeds": missing, "configs": [[lab, str(m)]], "top_up": True})
    return records, rounds


def short_leaders(records: list[dict], design: Design) -> dict[tuple[str, object], list[int]]:
    """(label, n_train) -> seeds to run once more after the last look: the leader at a size (and scratch) missing
    seeds that other configurations there ran.  A configuration decided early and stopped can take the lead later
    (the leader is paired over shared seeds); its numbers are the ones a recommendation quotes, so it gets the seeds
    the others got, once."""
    groups = by_config(records)
    out: dict = {}
    for size in race(records, design):
        n = size["n_train"]
        ran = {s for (lab, m), seeds in groups.items() if m == n for s in seeds}
        for lab in (size["leader"], SCRATCH):
            have = set(groups.get((lab, n), {}))
            missing = [s for s in sorted(ran, key=design.rank(ran).get) if s not in have]
            if have and missing:
                out[(lab, n)] = missing
    return out
