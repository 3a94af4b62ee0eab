"""Per-strategy accuracy, transfer gain over scratch, and convergence speed-up."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from transferlab.analysis.stats import Design, compare, decide, mean_ci

SCRATCH = "scratch"


def size_key(n) -> tuple:
    return (1, 0) if n == "all" else (0, int(n))


def trained(records: list[dict]) -> list[dict]:
    return [r for r in records if r["status"] == "ok" and r["strategy"] != "zero_shot"]


def by_config(records: list[dict]) -> dict[tuple[str, object], dict[int, dict]]:
    """(label, n_train) -> {seed: record}, finished trials only."""
    out: dict = defaultdict(dict)
    for r in trained(records):
        out[(r["label"], r["n_train"])][r["seed"]] = r
    return out


def accuracy_rows(records: list[dict]) -> list[dict]:
    groups = by_config(records)
    failed = defaultdict(int)
    for r in records:
        if r["status"] != "ok":
            failed[(r["label"], r["n_train"])] += 1
    rows = []
    for (lab, n), seeds in groups.items():
        recs = list(seeds.values())
        first = recs[0]
        rows.append({
            "label": lab, "strategy": first["strategy"], "params": first["params"], "n_train": n,
            "n_train_total": int(np.mean([r["n_train_total"] for r in recs])),
            "test_acc": clip01(mean_ci([r["test_acc"] for r in recs])),
            "best_val_acc": float(np.mean([r["best_val_acc"] for r in recs])),
            "val_acc": mean_ci([r["best_val_acc"] for r in recs]),
            "trainable_params": int(np.mean([r["trainable_params"] for r in recs])),
            "frozen_blocks": first.get("frozen_blocks", 0),
            "wall_s": float(np.mean([r["wall_s"] for r in recs])),
            "seeds": sorted(seeds), "not_ok": failed[(lab, n)],
            "per_seed": [[s, seeds[s]["test_acc"]] for s in sorted(seeds)],
            "per_seed_val": [[s, seeds[s]["best_val_acc"]] for s in sorted(seeds)],
        })
    rows.sort(key=lambda r: (size_key(r["n_train"]), -r["test_acc"]["mean"]))
    return rows


def clip01(ci: dict) -> dict:
    """An accuracy's CI cannot leave [0, 1] (the t interval can, with few seeds)."""
    return {**ci, "lo": max(0.0, ci["lo"]), "hi": min(1.0, ci["hi"])} if ci["n"] > 1 else ci


def against_scratch(records: list[dict]):
    """(label, n_train, {seed: record}, scratch's {seed: record}) for every non-scratch configuration."""
    groups = by_config(records)
    for (lab, n), seeds in groups.items():
        base = groups.get((SCRATCH, n))
        if lab != SCRATCH and base:
            yield lab, n, seeds, base


def gains(records: list[dict], design: Design = Design()) -> list[dict]:
    """Paired (same seed) test-accuracy difference of every strategy against scratch, with its verdict.

    The strategies compared with scratch at one target size are one family (Holm), read at the
    design's looks (see ``stats``).
    """
    families: dict = defaultdict(list)
    for lab, n, seeds, base in against_scratch(records):
        c = compare({s: r["test_acc"] for s, r in seeds.items()}, {s: r["test_acc"] for s, r in base.items()}, design,
                    design.test_resolution)
        families[n].append((lab, c))
    rows = []
    for n, items in families.items():
        for (lab, _), decided in zip(items, decide([c for _, c in items], design)):
            # A difference of two accuracies lies in [-1, 1]; the t interval of a few seeds can leave it.
            decided = {**decided, "lo": max(-1.0, decided["lo"]), "hi": min(1.0, decided["hi"])}
            rows.append({"label": lab, "n_train": n, "gain": decided, "verdict": decided["verdict"]})
    rows.sort(key=lambda r: (size_key(r["n_train"]), -r["gain"]["mean"] if math.isfinite(r["gain"]["mean"]) else 0))
    return rows


def race(records: list[dict], design: Design = Design()) -> list[dict]:
    """Per target size, the validation leader and every other strategy's verdict against it.

    Validation only: this is what chooses (the recommendation, and which strategies stay in a
    sequential study).  A strategy decided ``worse`` than the leader is out of the race.
    """
    out = []
    sizes = {n for _, n in by_config(records)}
    groups = by_config(records)
    for n in sorted(sizes, key=size_key):
        rows = {lab: seeds for (lab, m), seeds in groups.items() if m == n}
        val = {lab: {s: r["best_val_acc"] for s, r in seeds.items()} for lab, seeds in rows.items()}
        # The leader is among the strategies that ran the most seeds: one stopped early (decided, or out of the
        # race) is compared with it on the seeds they share, but cannot lead on a mean over fewer, earlier seeds.
        most = max(len(v) for v in val.values())
        leader = max((lab for lab in val if len(val[lab]) == most),
                     key=lambda lab: (float(np.mean(list(val[lab].values()))), lab == SCRATCH))
        others = [lab for lab in val if lab != leader]
        decided = (decide([compare(val[lab], val[leader], design, design.val_resolution) for lab in others], design)
                   if others else [])
        out.append({"n_train": n, "leader": leader, "vs_leader": [{"label": lab, **d} for lab, d in zip(others, decided)]})
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
            if s is None or not s["history"] or not r["history"] or all(h["step"] == 0 for h in r["history"]):
                continue  # a closed-form fit (a probe) takes no optimizer steps: no speed-up in steps
            target = s["best_val_acc"]
            e_scratch = first_step_reaching(s["history"], target)
            e_strat = first_step_reaching(r["history"], target)
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
            for h in r["history"]:
                per_step[h["step"]].append(h["val_acc"])
        steps = sorted(per_step)
        out[f"{lab}|{n}"] = {"label": lab, "n_train": n, "steps": steps,
                             "val_acc": [float(np.mean(per_step[e])) for e in steps]}
    return out
