"""Is the default budget enough? Each arm at the default step budget against 8x the steps, with convergence shares.

Two cases, 3 fixed seeds each, strategies scratch, linear_probe, head and finetune:
- ``demo``: the demo CNN (digits 0-4) on digits 5-9 (half B), 5 and 20 per class.
- ``usps``: a BatchNorm CNN pretrained here on MNIST 0-4 (1,000 per class, 4 epochs) on USPS 0-4 read in MNIST's
  framing (``frame=mnist``), 5 and 20 per class; needs ../shared/data.

For every strategy and size it prints test accuracy (mean and 95% CI over seeds) under both budgets, the share of
trials converged, finetune's gain over scratch with its verdict, and the wall time of each study.

    python benchmarks/bench_budget.py --case demo
    python benchmarks/bench_budget.py --case usps
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import transferlab as tl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STRATEGIES = ["scratch", "linear_probe", "head", "finetune"]


def case(name: str):
    if name == "demo":
        from transferlab import zoo
        from transferlab.data.builtin import digits_target

        return zoo.pretrained("cnn"), digits_target()
    from bench_sources_usps import pretrain  # the same MNIST CNN as the sources benchmark

    from transferlab.data.digitsets import target

    return pretrain(SHARED, "0-4"), target("usps", str(SHARED / "usps"), classes="0-4", frame="mnist")


def study(backbone, data, budget: tl.Budget, out: Path):
    cfg = tl.StudyConfig(seeds=[0, 1, 2], sizes=[5, 20], budget=budget, profile=False,
                         strategies=[{"name": s} for s in STRATEGIES])
    t0 = time.perf_counter()
    res = tl.run_study(backbone, data, cfg, out, report=False)
    return res, time.perf_counter() - t0


def _ci(iv) -> str:
    return f"{100 * iv.mean:5.1f} [{100 * iv.lo:5.1f}, {100 * iv.hi:5.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=["demo", "usps"], default="demo")
    ap.add_argument("--out", default="/tmp/bench-budget")
    args = ap.parse_args()
    backbone, data = case(args.case)
    runs = {}
    for tag, budget in (("default", tl.Budget()), ("8x", tl.Budget(min_steps=8 * 500, epochs=None))):
        runs[tag] = study(backbone, data, budget, Path(args.out) / args.case / tag)
    print(f"case {args.case}: wall time default {runs['default'][1]:.0f} s, 8x {runs['8x'][1]:.0f} s")
    print(f"{'strategy':<14}{'n':>4}  {'default test % [CI]':<22}{'conv':>6}  {'8x test % [CI]':<22}{'conv':>6}")
    a, b = runs["default"][0].analysis, runs["8x"][0].analysis
    for row in a.accuracy:
        other = next(r for r in b.accuracy if r.label == row.label and r.n_train == row.n_train)
        ca, cb = a.converged(row.label, row.n_train), b.converged(row.label, row.n_train)
        print(f"{row.label:<14}{row.n_train!s:>4}  {_ci(row.test_acc):<22}{ca.converged}/{ca.trials:>3}  "
              f"{_ci(other.test_acc):<22}{cb.converged}/{cb.trials:>3}")
    for n in (5, 20):
        ga, gb = a.gain("finetune", n), b.gain("finetune", n)
        print(f"finetune - scratch at {n}: default {100 * ga.gain.mean:+.1f} pp {ga.verdict}; "
              f"8x {100 * gb.gain.mean:+.1f} pp {gb.verdict}")
    print(f"converged: default {100 * a.converged_share():.0f}%, 8x {100 * b.converged_share():.0f}%")


if __name__ == "__main__":
    main()
