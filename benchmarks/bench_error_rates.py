"""The verdicts' error rates and power, by simulation on the pure analysis functions (seconds, no training).

Three measurements, each on synthetic trial records with a known truth:
1. **False verdicts per family**: one family of comparisons with scratch holding mixed truths (true 0, inside
   the ±1 pp margin, on it, beyond it, both signs), read by the sequential study (3, 6, 10 seeds, stopping what is
   decided).  Prints how often a family holds at least one false better, worse or equivalent, and by kind.
2. **Power**: the chance that a true +1 pp and +2 pp difference (paired SD 1 pp) is decided better.
3. **The race**: 14 truly equal strategies with unequal selection effort (the best of 3, 30 or 90 noisy validation
   evaluations chose each one's LR and step).  Prints how often one is falsely decided worse than the leader.

    python benchmarks/bench_error_rates.py [--reps 2000]

The script uses only ``run_sequential``, ``gains``, ``race`` and ``Design``, so it runs unchanged against an older
checkout (``PYTHONPATH=old/src python benchmarks/bench_error_rates.py``) for a before/after table.
"""
from __future__ import annotations

import argparse

import numpy as np

from transferlab.analysis.gain import gains, race
from transferlab.analysis.sequential import run_sequential
from transferlab.analysis.stats import Design

DESIGN = Design(looks=(3, 6, 10), margin=0.01)
MIXED = {"zero": 0.0, "zero2": 0.0, "inside": 0.004, "edge": 0.01, "beyond": 0.0101, "minus": -0.012, "tiny-": -0.006}


def record(label, seed, test, val, holdout):
    return {"trial_id": f"{label}-5-{seed}", "strategy": label, "label": label, "params": {}, "seed": seed,
            "n_train": 5, "n_train_total": 25, "status": "ok", "test_acc": test, "best_val_acc": val,
            "holdout_acc": holdout, "trainable_params": 1000, "wall_s": 1.0, "history": []}


def study(rng, deltas, sd):
    base: dict[int, float] = {}

    def run_round(seeds, only):
        out = []
        for s in seeds:
            base.setdefault(s, 0.8 + rng.normal(0, 0.02))
            for lab, delta in {"scratch": 0.0, **deltas}.items():
                if only is None or (lab, 5) in only:
                    acc = base[s] + (0.0 if lab == "scratch" else delta + rng.normal(0, sd))
                    val = acc + rng.normal(0, sd / 2)
                    out.append(record(lab, s, acc, val, val))
        return out

    records, _ = run_sequential(list(DESIGN.looks), DESIGN, run_round)
    return {g["label"]: g["verdict"] for g in gains(records, DESIGN)}


def false_kind(verdict, truth, margin):
    if verdict == "better" and truth <= 0:
        return "better"
    if verdict == "worse" and truth >= 0:
        return "worse"
    if verdict == "equivalent" and abs(truth) >= margin:
        return "equivalent"
    return None


def family_errors(reps, rng):
    kinds, any_false = {"better": 0, "worse": 0, "equivalent": 0}, 0
    for _ in range(reps):
        errors = {false_kind(v, MIXED[lab], DESIGN.margin) for lab, v in study(rng, MIXED, 0.01).items()} - {None}
        any_false += bool(errors)
        for k in errors:
            kinds[k] += 1
    return any_false / reps, {k: v / reps for k, v in kinds.items()}


def power(reps, rng, delta):
    return float(np.mean([study(rng, {"real": delta, "other": 0.0}, 0.01)["real"] == "better" for _ in range(reps)]))


def race_exits(reps, rng, n_seeds):
    efforts = {"scratch": 90, "linear_probe": 3, **{f"s{i}": (3, 30, 90)[i % 3] for i in range(12)}}
    out = 0
    for _ in range(reps):
        recs = []
        for s in range(n_seeds):
            for lab, effort in efforts.items():
                model = 0.8 + rng.normal(0, 0.01)
                recs.append(record(lab, s, model, model + rng.normal(0, 0.01, effort).max(), model + rng.normal(0, 0.01)))
        size = race(recs, Design(looks=(n_seeds,)))[0]
        out += any(c["verdict"] == "worse" for c in size["vs_leader"])
    return out / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=1000)
    reps = parser.parse_args().reps
    rng = np.random.default_rng(0)
    rate, kinds = family_errors(reps, rng)
    print(f"false verdicts per family (mixed truths, looks 3/6/10, {reps} studies): any {rate:.3f}; "
          + ", ".join(f"false {k} {v:.3f}" for k, v in kinds.items()))
    for delta in (0.01, 0.02):
        print(f"power at +{100 * delta:.0f} pp (paired SD 1 pp, looks 3/6/10): {power(reps // 2, rng, delta):.3f}")
    for n in (3, 10):
        print(f"race, 14 equal strategies, {n} seeds: one falsely out in {race_exits(reps // 2, rng, n):.3f} of studies")


if __name__ == "__main__":
    main()
