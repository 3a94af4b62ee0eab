"""One seed, one record: a trial's record alone against the same trial trained in cohorts of seeds.

A seed is what every verdict pairs on, and a resumed study reruns only the trials that are missing, so trial
(configuration, size, seed) must give the same record however it was batched.  This trains, in float32 as a
study does, the two cases of issue 36 and prints each seed's chosen learning rate, step and test accuracy alone
and in cohorts:

- the demo MLP with a new dropout head (``head(depth=2, dropout=0.5)``), 5 per class, 150 steps: seed 0 alone
  and in cohorts [0], [0, 1], [0, 1, 2], [0 .. 3];
- the demo CNN (BatchNorm), 20 per class, 200 steps: scratch, finetune and freeze_k, seeds 0-3 as one cohort
  against each alone.

    python benchmarks/bench_same_seed.py
"""
from __future__ import annotations

import time

import torch

from transferlab import zoo
from transferlab.data.builtin import digits_target
from transferlab.pipeline import prepare
from transferlab.results import TrialSpec
from transferlab.training import Budget
from transferlab.trial import run_seeds


def _line(tag: str, rec) -> str:
    return (f"  {tag:<22} lr {rec.chosen.get('lr', float('nan')):<8g} step {rec.best_step:>4}  "
            f"val {100 * rec.best_val_acc:6.2f}%  test {100 * rec.test_acc:6.2f}%  {rec.members or 'alone'}")


def dropout_head() -> int:
    bb = zoo.pretrained("mlp")
    data = prepare(digits_target(half="B"), bb)
    budget = Budget(steps=150, eval_every=10, patience=5, batch_size=32)
    spec = lambda s: TrialSpec("head", {"depth": 2, "dropout": 0.5}, s, 5)  # noqa: E731
    print("demo MLP, head(depth=2, dropout=0.5), 5 per class, 150 steps: seed 0")
    alone = run_seeds([spec(0)], bb, "mlp", data, budget)[0]
    print(_line("alone", alone))
    worst = 0
    for cohort in ([0], [0, 1], [0, 1, 2], [0, 1, 2, 3]):
        rec = run_seeds([spec(s) for s in cohort], bb, "mlp", data, budget, members=True)[0]
        print(_line(f"cohort {cohort}", rec))
        worst += _differs(alone, rec)
    return worst


def _differs(a, b) -> int:
    return int(a.chosen != b.chosen or a.best_step != b.best_step or abs(a.test_acc - b.test_acc) > 1e-3)


def bn_cnn() -> int:
    bb = zoo.pretrained("cnn")
    data = prepare(digits_target(half="B"), bb)
    budget = Budget(steps=200, eval_every=10, patience=5, batch_size=32)
    differ = 0
    for name, params in (("scratch", {}), ("finetune", {}), ("freeze_k", {"k": 1})):
        specs = [TrialSpec(name, params, s, 20) for s in range(4)]
        together = run_seeds(specs, bb, "cnn", data, budget, members=True)
        print(f"demo CNN, {name}, 20 per class, 200 steps, seeds 0-3 as one cohort against each alone")
        for spec, rec in zip(specs, together):
            alone = run_seeds([spec], bb, "cnn", data, budget)[0]
            print(_line(f"seed {spec.seed} alone", alone))
            print(_line(f"seed {spec.seed} in cohort", rec))
            differ += _differs(alone, rec)
    return differ


if __name__ == "__main__":
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    a = dropout_head()
    b = bn_cnn()
    print(f"\nrecords that differ from their seed's solo record: dropout head {a} of 4 cohorts, "
          f"BatchNorm CNN {b} of 12 trials  ({time.perf_counter() - t0:.0f} s)")
