"""How many comparisons a study decides, and at what compute: the fixed 3-seed grid against the sequential design.

For each task, two designs on the same model, data, strategies and epoch budget:
- "fixed": 3 seeds for every configuration, every LR candidate trained for the whole budget (the design before
  sequential studies and successive halving);
- "sequential": 3 seeds, then more (6, 10) only where a verdict is still open, racing, and successive halving of
  the LR candidates.
Both read verdicts the same way (the study's simultaneous intervals, equivalence margin 1 pp).  It prints the share of comparisons with
scratch decided (better, worse or equivalent), the trial-steps (optimizer steps over all LR candidates) and the wall
time, and the ratios.  The tasks are the three demo sources on digits 5-9 (half B) and, when ../shared/data is
present, a CNN pretrained on MNIST 0-4 studied on USPS 5-9.

    python benchmarks/bench_verdicts.py [--tasks mlp,cnn,cnn10,usps] [--epochs 30]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def demo_task(arch: str):
    from dataclasses import replace

    from transferlab import zoo
    from transferlab.data.builtin import digits_source, digits_target

    data = digits_target(half="B")
    return zoo.pretrained(arch), replace(data, source=digits_source(*zoo.SOURCES[arch])), [5, 20, "all"]


def usps_task():
    """A small CNN pretrained here on MNIST 0-4 (16 px), target USPS 5-9: a real cross-dataset transfer."""
    from transferlab import zoo
    from transferlab.backbones.base import Backbone, Preprocessing
    from transferlab.data.base import Split
    from transferlab.data.digitsets import arrays, target as digit_target
    from transferlab.fitloop import fit
    from transferlab.training import Budget, param_groups

    x, y = arrays("mnist", str(SHARED / "mnist"), "train", "0-4", (16, 16), 1, 1000)
    mean, std = float(x.mean()), float(x.std())
    pre = Preprocessing(kind="image", mean=(mean,), std=(std,), input_shape=(1, 16, 16))
    torch.manual_seed(0)
    blocks, head = zoo.ARCHITECTURES["cnn"](5)
    bb = Backbone(blocks, head, torch.zeros(2, 1, 16, 16), pre, [str(c) for c in range(5)], spec={"source": "mnist-0-4-cnn"})
    bb.set_constructor(zoo.DemoConstructor("cnn"), torch.nn.ModuleDict(dict(blocks)), "the demo CNN's constructor")
    data = Split(pre.apply(x), torch.as_tensor(y))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    fit(bb, param_groups(list(bb.blocks.values()), bb.head, 3e-3), data.subset(perm[500:]), data.subset(perm[:500]),
        Budget(epochs=5, patience=5, batch_size=64), torch.Generator().manual_seed(0))
    data = digit_target("usps", str(SHARED / "usps"), classes="5-9", size=(16, 16), max_per_class=200, max_test_per_class=100)
    return bb, data, [5, 20, "all"]


def run(task: str, design: str, epochs: int) -> dict:
    from transferlab import StudyConfig
    from transferlab.execution import run_study
    from transferlab.training import Budget

    model, data, sizes = usps_task() if task == "usps" else demo_task(task)
    kw = dict(seeds=[0, 1, 2], halving=False) if design == "fixed" else {}
    config = StudyConfig(sizes=sizes, budget=Budget(epochs=epochs), augment="none", **kw)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        result = run_study(model, data, config, out=out, report=False)
        wall = time.perf_counter() - t0
    dec = result.analysis.decided.to_dict()
    steps_run = sum(r.get("steps_run", 0) for r in result.trials)
    return {"task": task, "design": design, "decided": dec["decided"], "total": dec["total"], "share": dec["share"],
            "trials": len([r for r in result.trials if r["strategy"] != "zero_shot"]), "trial_steps": steps_run,
            "wall_s": wall, "verdicts": {k: dec[k] for k in ("better", "worse", "equivalent", "inconclusive")},
            "recommendation": result.analysis.recommendation.text}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="mlp,cnn,cnn10,usps")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    os.environ.setdefault("TRANSFERLAB_CACHE", str(Path(tempfile.gettempdir()) / "transferlab-bench-cache"))
    tasks = [t for t in args.tasks.split(",") if t != "usps" or (SHARED / "usps").exists()]
    rows = []
    for task in tasks:
        for design in ("fixed", "sequential"):
            row = run(task, design, args.epochs)
            rows.append(row)
            print(f"{task:6s} {design:10s} decided {row['decided']:3d}/{row['total']:3d} ({100 * row['share']:5.1f}%) "
                  f"{row['verdicts']}  trials {row['trials']:4d}  trial-steps {row['trial_steps']:7d}  "
                  f"wall {row['wall_s']:7.1f} s", flush=True)
    print("\nratios, sequential / fixed:")
    for task in tasks:
        f, s = (next(r for r in rows if r["task"] == task and r["design"] == d) for d in ("fixed", "sequential"))
        print(f"{task:6s} decided {100 * f['share']:.0f}% -> {100 * s['share']:.0f}%   trial-steps "
              f"{s['trial_steps'] / f['trial_steps']:.2f}x   wall {s['wall_s'] / f['wall_s']:.2f}x")
    for r in rows:
        if r["design"] == "sequential":
            print(f"\n{r['task']}: {r['recommendation']}")


if __name__ == "__main__":
    main()
