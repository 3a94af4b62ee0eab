"""Per-strategy accuracy, transfer gain over scratch, and convergence speed-up.

Every function here reads trial records as typed ``TrialRecord``s (``results.as_records``: dicts are converted)."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from transferlab.analysis.leader import leader
from transferlab.analysis.stats import Design, best_of_others, compare, decide, mean_ci
from transferlab.results import TrialRecord, as_records, unpack_correct

SCRATCH = "scratch"


def size_key(n) -> tuple:
    return (1, 0) if n == "all" else (0, int(n))


def trained(records) -> list[TrialRecord]:
    return [r for r in as_records(records) if r.trained]


def by_config(records) -> dict[tuple[str, object], dict[int, TrialRecord]]:
    """(label, n_train) -> {seed: record}, finished trials only."""
    out: dict = defaultdict(dict)
    for r in trained(records):
        out[(r.label, r.n_train)][r.seed] = r
    return out


def accuracy_rows(records) -> list[dict]:
    records = as_records(records)
    groups = by_config(records)
    failed = defaultdict(int)
    for r in records:
        if r.status != "ok":
            failed[(r.label, r.n_train)] += 1
    rows = []
    for (lab, n), seeds in groups.items():
        recs = list(seeds.values())
        first = recs[0]
        rows.append({
            "label": lab, "strategy": first.strategy, "params": first.params, "n_train": n,
            "n_train_total": int(np.mean([r.n_train_total for r in recs])),
            "test_acc": clip01(mean_ci([r.test_acc for r in recs])),
            "best_val_acc": float(np.mean([r.val_score for r in recs])),
            "val_acc": mean_ci([r.val_score for r in recs]),
            "select_val_acc": float(np.mean([r.best_val_acc for r in recs])),
            "trainable_params": int(np.mean([r.trainable_params for r in recs])),
            "total_params": int(np.mean([r.total_params for r in recs])),
            "infer_ms": _median([r.infer_ms for r in recs]),
            "frozen_blocks": first.frozen_blocks,
            "wall_s": float(np.mean([r.wall_s for r in recs])),
            "seeds": sorted(seeds), "not_ok": failed[(lab, n)],
            "per_seed": [[s, seeds[s].test_acc] for s in sorted(seeds)],
            "per_seed_val": [[s, seeds[s].val_score] for s in sorted(seeds)],
        })
    rows.sort(key=lambda r: (size_key(r["n_train"]), -r["test_acc"]["mean"]))
    return rows


def _median(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.median(vals)) if vals else None


def clip01(ci: dict) -> dict:
    """An accuracy's CI cannot leave [0, 1] (the t interval can, with few seeds)."""
    return {**ci, "lo": max(0.0, ci["lo"]), "hi": min(1.0, ci["hi"])} if ci["n"] > 1 else ci


def not_ok_seeds(records) -> dict[tuple[str, object], set[int]]:
    """(label, n_train) -> seeds whose trial failed or diverged (and did not later finish)."""
    records = as_records(records)
    ok = {(r.label, r.n_train, r.seed) for r in trained(records)}
    out: dict = defaultdict(set)
    for r in records:
        if r.status != "ok" and (r.label, r.n_train, r.seed) not in ok:
            out[(r.label, r.n_train)].add(r.seed)
    return out


def against_scratch(records: list[dict]):
    """(label, n_train, {seed: record}, scratch's {seed: record}) for every non-scratch configuration."""
    groups = by_config(records)
    for (lab, n), seeds in groups.items():
        base = groups.get((SCRATCH, n))
        if lab != SCRATCH and base:
            yield lab, n, seeds, base


def gains(records, design: Design = Design(), on: str = "test") -> list[dict]:
    """Paired (same seed) test-accuracy difference of every strategy against scratch, with its verdict.

    The comparisons with scratch at one target size are one family (the question is "did transfer help at my data
    size?"): its verdicts hold together at 1 - alpha.  A sentence that reads several sizes together ("better at every
    size") rests on one family per size, and says so.
    ``on="val"``: the same comparisons on the held-out validation score, which is what a sequential study reads to
    decide where more seeds go (so the test split steers nothing, not even how many seeds a configuration gets).
    """
    records = as_records(records)
    score = (lambda r: r.test_acc) if on == "test" else (lambda r: r.val_score)  # noqa: E731
    resolution = design.test_resolution if on == "test" else design.val_resolution
    shared_test = design.test_examples if on == "test" else 0  # one test split for every seed: its per-example term
    rows = (lambda seeds: {s: unpack_correct(r.test_correct) for s, r in seeds.items()}) if shared_test else None  # noqa: E731
    items = [(lab, n, compare({s: score(r) for s, r in seeds.items()}, {s: score(r) for s, r in base.items()},
                              design, resolution, shared_test, (rows(seeds), rows(base)) if rows else None))
             for lab, n, seeds, base in against_scratch(records)]
    decided_by: dict = {}
    for n in {n for _, n, _ in items}:
        family = [(lab, c) for lab, m, c in items if m == n]
        decided_by.update({(lab, n): d for (lab, _), d in zip(family, decide([c for _, c in family], design))})
    rows, bad, groups = [], not_ok_seeds(records), by_config(records)
    for lab, n, _ in items:
        decided = decided_by[(lab, n)]
        # A difference of two accuracies lies in [-1, 1]; the t interval of a few seeds can leave it.
        lo, hi = decided["lo"], decided["hi"]
        ran, base_ran = set(groups.get((lab, n), {})), set(groups.get((SCRATCH, n), {}))
        decided = {**decided, "lo": max(-1.0, lo) if math.isfinite(lo) else lo, "hi": min(1.0, hi) if math.isfinite(hi) else hi,
                   # seeds out of the pairing because one side's trial failed while the other side's finished
                   "dropped": len((bad[(lab, n)] & base_ran) | (bad[(SCRATCH, n)] & ran))}
        rows.append({"label": lab, "n_train": n, "gain": decided, "verdict": decided["verdict"]})
    rows.sort(key=lambda r: (size_key(r["n_train"]), -r["gain"]["mean"] if math.isfinite(r["gain"]["mean"]) else 0))
    return rows


def race(records: list[dict], design: Design = Design()) -> list[dict]:
    """Per target size, the validation leader and every strategy compared with the best of the others.

    Validation only (the held-out half, ``val_score``): this is what chooses (the recommendation, and which
    strategies stay in a sequential study).  The leader is ``leader.leader`` (an additive model of configuration and
    seed effects, so configurations that stopped early cannot outvote the others).  Each other strategy gets Hsu's
    comparison with the best (``stats.best_of_others``): ``worse`` reads "not better than the best of the others"
    and takes it out of the race; ``equivalent`` is within the margin of the best of the others.  The leader's own
    row (``best``) says whether it is decided ahead of every other.  The K intervals at one size are one family.
    """
    out = []
    groups = by_config(records)
    for n in sorted({m for _, m in groups}, key=size_key):
        val = {lab: {s: r.val_score for s, r in seeds.items()} for (lab, m), seeds in groups.items() if m == n}
        first = leader(val, tie=lambda lab: lab == SCRATCH)  # an exact tie goes to scratch: no reuse claimed
        mcb = best_of_others(val, design, design.val_resolution) if len(val) > 1 else {}
        out.append({"n_train": n, "leader": first, "best": mcb.get(first),
                    "vs_leader": [{"label": lab, **mcb[lab]} for lab in val if lab != first]})
    return out


def first_step_reaching(history: list[dict], target: float) -> int | None:
    for h in history:
        if h["val_acc"] >= target - 1e-12:
            return max(1, h["step"])  # a probe's step 0 (its closed-form fit) still counts as one
    return None


def speedups(records: list[dict]) -> list[dict]:
    """Steps scratch needs to reach its best validation accuracy / steps the strategy needs for that value."""
    rows = []
    for lab, n, seeds, base in against_scratch(records):
        ratios, reached = [], 0
        for seed, r in seeds.items():
            s = base.get(seed)
            if s is None or not s.history or not r.history or all(h["step"] == 0 for h in r.history):
                continue  # a closed-form fit (a probe) takes no optimizer steps: no speed-up in steps
            target = s.best_val_acc
            e_scratch = first_step_reaching(s.history, target)
            e_strat = first_step_reaching(r.history, target)
            if e_strat is not None and e_scratch is not None:
                reached += 1
                ratios.append(e_scratch / e_strat)
        rows.append({
            "label": lab, "n_train": n, "seeds": len(seeds), "reached": reached,
            "speedup": float(np.exp(np.mean(np.log(ratios)))) if ratios else None,  # geometric mean
        })
    return rows


def curves(records: list[dict]) -> dict:
    """Mean validation accuracy per evaluation, per (label, n_train), averaged over the seeds that ran that step
    (one size's seeds share the evaluation period, so their steps line up)."""
    out: dict = {}
    for (lab, n), seeds in by_config(records).items():
        per_step = defaultdict(list)
        for r in seeds.values():
            for h in r.history:
                per_step[h["step"]].append(h["val_acc"])
        steps = sorted(per_step)
        out[f"{lab}|{n}"] = {"label": lab, "n_train": n, "steps": steps,
                             "val_acc": [float(np.mean(per_step[e])) for e in steps]}
    return out
