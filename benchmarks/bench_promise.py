"""The verdicts' promise, checked by simulation: false verdicts of every kind per family, and power.

Synthetic trial records with a known truth, read by the study's own analysis (``run_sequential``, ``gains``,
``race``): one target size, scratch and K strategies, looks at 3, 6 and 10 seeds with the sequential study's
stopping, futility and race.  Scenarios:

- ``null``: every strategy equal to scratch (per-seed SD 2 pp each);
- ``mixed``: truths 0, +0.5, +1.0 (on the margin), -1.2, +3 and +10 pp;
- ``hetero``: mixed truths, one strategy (the +3 pp one) ten times noisier than the rest (SD 10 pp);
- ``discrete``: mixed truths, accuracies counted on a 135-example test split (steps of 0.74 pp);
- ``power X``: one strategy X pp better than scratch, five equal to it (SD 2 pp each: paired SD 2.8 pp).

For each it prints how often a family holds at least one false verdict (with scratch, on test; in the race, on
validation) and by kind, the mean seeds per configuration, and for the power rows the share of studies that call the
true gain better.  A false verdict: better or worse with the wrong sign (or a true 0), equivalent for a true
difference at or beyond the margin; in the race, "not better than the best of the others" for the strict best, better
for a configuration that is not strictly the best, equivalent when the gap to the best of the others is at or beyond
the margin.

    python benchmarks/bench_promise.py [--reps 400] [--rho 3] [--looks 3,6,10]
    PYTHONPATH=OLD_CHECKOUT/src python benchmarks/bench_promise.py    # the same against an older release

The script uses only ``run_sequential``, ``gains``, ``race`` and ``Design``, so it runs against older checkouts.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from transferlab.analysis.gain import gains, race
from transferlab.analysis.sequential import run_sequential
from transferlab.analysis.stats import Design

MARGIN = 0.01
MIXED = {"a": 0.0, "b": 0.005, "c": 0.01, "d": -0.012, "e": 0.03, "f": 0.10}
SCENARIOS = {
    "null": ({k: 0.0 for k in MIXED}, {}, None),
    "mixed": (MIXED, {}, None),
    "hetero": (MIXED, {"e": 0.10}, None),
    "discrete": (MIXED, {}, 135),
}


def record(label, seed, test, val):
    return {"trial_id": f"{label}-5-{seed}", "strategy": label, "label": label, "params": {}, "seed": seed,
            "n_train": 5, "n_train_total": 25, "status": "ok", "test_acc": test, "best_val_acc": val,
            "holdout_acc": val, "trainable_params": 1000, "wall_s": 1.0, "history": []}


def study(rng, design, truths, sds, n_test):
    """One simulated study: each (strategy, seed) has a true accuracy; test and validation measure it with noise."""
    base: dict[int, float] = {}
    arms = {"scratch": 0.0, **truths}

    def run_round(seeds, only):
        out = []
        for s in seeds:
            base.setdefault(s, 0.8 + rng.normal(0, 0.02))
            for lab, delta in arms.items():
                if only is None or (lab, 5) in only:
                    acc = base[s] + delta + rng.normal(0, sds.get(lab, 0.02))
                    test, val = acc + rng.normal(0, 0.005), acc + rng.normal(0, 0.005)
                    if n_test:
                        test = round(min(1.0, max(0.0, test)) * n_test) / n_test
                    out.append(record(lab, s, test, val))
        return out

    records, _ = run_sequential(list(design.looks), design, run_round)
    return records


def gain_errors(rows, truths):
    kinds = set()
    for g in rows:
        t, v = truths[g["label"]], g["verdict"]
        if (v == "better" and t <= 0) or (v == "worse" and t >= 0):
            kinds.add(str(v))
        elif v == "equivalent" and abs(t) >= MARGIN:
            kinds.add("equivalent")
    return kinds


def race_errors(size, arms):
    """False claims about mu_i - max_{j != i} mu_j (the new race); for the old race's 'worse than the leader', a
    true best called worse is false too, so the 'worse' count compares across versions."""
    kinds = set()
    rows = list(size["vs_leader"]) + ([{"label": size["leader"], **size["best"]}] if size.get("best") else [])
    for c in rows:
        gap = arms[c["label"]] - max(v for k, v in arms.items() if k != c["label"])
        v = c["verdict"]
        if v == "worse" and gap > 0:
            kinds.add("race worse")
        elif v == "worse" and gap == 0:
            kinds.add("equal best out (a true claim today)")
        elif v == "better" and gap <= 0:
            kinds.add("race better")
        elif v == "equivalent" and abs(gap) >= MARGIN:
            kinds.add("race equivalent")
    return kinds


def scenario(reps, rng, design, truths, sds, n_test):
    arms = {"scratch": 0.0, **truths}
    counts: dict[str, int] = {}
    any_gain = any_race = 0
    seeds = []
    decided = {}
    for _ in range(reps):
        recs = study(rng, design, truths, sds, n_test)
        g = gains(recs, design)
        kinds = gain_errors(g, arms)
        rk = race_errors(race(recs, design)[0], arms)
        any_gain += bool(kinds)
        any_race += bool({k for k in rk if not k.startswith("equal best")})
        for k in kinds | rk:
            counts[k] = counts.get(k, 0) + 1
        seeds.append(len(recs) / len(arms))
        for row in g:
            decided.setdefault(row["label"], []).append(str(row["verdict"]))
    return any_gain / reps, any_race / reps, {k: v / reps for k, v in sorted(counts.items())}, float(np.mean(seeds)), decided


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--rho", type=float, default=None, help="spending exponent (default: the Design's)")
    parser.add_argument("--looks", default="3,6,10")
    args = parser.parse_args()
    looks = tuple(int(x) for x in args.looks.split(","))
    design = Design(looks=looks, margin=MARGIN, **({"rho": args.rho} if args.rho is not None else {}))
    rng = np.random.default_rng(0)
    t0 = time.time()
    print(f"looks {looks}, rho {design.rho}, alpha {design.alpha}, margin {MARGIN}; {args.reps} studies each")
    print("| scenario | any false, vs scratch | any false, race | by kind | seeds per configuration |")
    print("|---|---:|---:|---|---:|")
    for name, (truths, sds, n_test) in SCENARIOS.items():
        g, r, kinds, seeds, _ = scenario(args.reps, rng, design, truths, sds, n_test)
        text = ", ".join(f"{k} {v:.3f}" for k, v in kinds.items()) or "none"
        print(f"| {name} | {g:.3f} | {r:.3f} | {text} | {seeds:.1f} |")
    print()
    print("| true gain (paired SD 2.8 pp) | decided better | seeds per configuration |")
    print("|---|---:|---:|")
    for pp in (3, 5, 10):
        truths = {"x": pp / 100, **{f"o{i}": 0.0 for i in range(5)}}
        _, _, _, seeds, decided = scenario(args.reps // 2, rng, design, truths, {}, None)
        print(f"| +{pp} pp | {np.mean([v == 'better' for v in decided['x']]):.3f} | {seeds:.1f} |")
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
