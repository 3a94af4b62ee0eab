"""Where a small study's time goes: imports, the preflight, the trials, and inside the trials the forward,
backward and optimizer steps against everything else (the overhead a faster study must remove).

The study: the demo CNN on digits 5-9; scratch, head and finetune; sizes 5 and 20; 3 seeds; the default step
budget; one worker, inline (so one profile sees every trial). cProfile's cumulative times of the outermost
calls are read from the profile (a recursive call is counted once, at its outermost frame).

    python benchmarks/bench_profile.py [--top 25]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

T0 = time.perf_counter()
import torch  # noqa: E402

import transferlab as tl  # noqa: E402
from transferlab import zoo  # noqa: E402
from transferlab.data.builtin import digits_target  # noqa: E402

IMPORT_S = time.perf_counter() - T0

# (what, file fragment, function name): the outermost calls whose cumulative time is that part of the work
PARTS = [
    ("forward (every module call: training, evaluation, caching)", "torch/nn/modules/module.py", "_wrapped_call_impl"),
    ("backward", "torch/autograd/__init__.py", "backward"),
    ("optimizer steps", "torch/optim/optimizer.py", "wrapper"),
    ("preflight (checks, profile, cost estimate)", "transferlab/pipeline.py", "preflight"),
    ("trials", "transferlab/trial.py", "run_seeds"),
    ("analysis", "transferlab/analysis/__init__.py", "analyze"),
    ("report", "transferlab/report/html.py", "write_report"),
]


def cumulative(stats: pstats.Stats, fragment: str, name: str) -> float:
    total = 0.0
    for (path, _, func), (_, _, _, ct, _) in stats.stats.items():
        if fragment in path and func == name:
            total += ct
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(2)
    config = tl.StudyConfig(strategies=["scratch", "head", "finetune"], seeds=[0, 1, 2], sizes=[5, 20], workers=1,
                            executor="inline")
    prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        prof.enable()
        result = tl.run_study(zoo.pretrained("cnn"), digits_target(), config, out=out)
        prof.disable()
        wall = time.perf_counter() - t0
    stats = pstats.Stats(prof)
    trials = result.study["run"]["trials_run"]
    print(f"imports {IMPORT_S:.1f} s; study {wall:.1f} s for {trials} trials")
    trial_s = cumulative(stats, "transferlab/trial.py", "run_seeds")
    for what, frag, name in PARTS:
        s = cumulative(stats, frag, name)
        share = f"{100 * s / trial_s:5.1f}% of trial time" if trial_s and what in PARTS[0][0] + "backward optimizer steps" else ""
        print(f"{what:60s} {s:7.1f} s  {share}")
    compute = sum(cumulative(stats, f, n) for _, f, n in PARTS[:3])
    print(f"forward + backward + optimizer, as a share of trial time: {100 * compute / trial_s:.0f}%"
          " (forward includes evaluation and caching passes)")
    print()
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
