"""Peak memory and wall time of one configuration's seeds trained as one batched cohort, per cohort size.

Each cohort size runs in its own process (``trial.run_seeds`` with ``members=True``: seeds x 3 learning rates as one
vmapped model), which prints the rise of its resident set (``ru_maxrss``, or the GPU's peak allocation) over the
moment before training, its wall time, the footprint ``members.member_bytes`` measured for one seed and how many
seeds ``members.seeds_that_fit`` lets one cohort take on this machine.

    python benchmarks/bench_cohort_memory.py                      # demo CNN and resnet18 at 64 px, 1, 2 and 4 seeds
    python benchmarks/bench_cohort_memory.py --device cuda --seeds 1,2,4,8
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def child(model: str, seeds: int, device: str, steps: int) -> dict:
    import torch

    from transferlab import zoo
    from transferlab.data.base import split_arrays
    from transferlab.data.builtin import digits_target
    from transferlab.pipeline import prepare
    from transferlab.results import TrialSpec
    from transferlab.training import Budget
    from transferlab.trial import _open, run_seeds

    torch.set_num_threads(2)
    if model == "cnn":
        bb, data = zoo.pretrained("cnn"), digits_target(half="B")
    else:
        from transferlab.sources import load_model

        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(400, 3, 64, 64, generator=g), torch.arange(400).remainder(5).numpy()
        data = split_arrays(x, y, [str(c) for c in range(5)], name="noise 64 px")
        bb = load_model(f"timm:{model}").build(torch.zeros(2, 3, 64, 64))
    data = prepare(data, bb)
    budget = Budget(steps=steps, eval_every=steps // 2, patience=10, batch_size=32)
    specs = [TrialSpec("finetune", {}, s, 20) for s in range(seeds)]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    recs = run_seeds(specs, bb, "m", data, budget, device=device, members=True)
    wall = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() - base if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss)
    # The footprint and the cap, after the cohort so its allocations are not in the peak above (absent before issue
    # 36: this script measures that tree too, with PYTHONPATH=...).
    try:
        from transferlab.members import free_bytes, member_bytes, seeds_that_fit

        probe = _open(specs[0], bb, "m", data, budget, None, device, (), lazy=True)
        per_seed = sum(member_bytes(f.run) for _, f in probe.fits)
        fit, free = seeds_that_fit(per_seed, device), free_bytes(device)
        del probe
    except ImportError:
        per_seed, fit, free = float("nan"), 0, float("nan")
    return {"model": model, "seeds": seeds, "members": recs[0].members, "peak_mb": peak / 2**20, "wall_s": wall,
            "per_seed_mb": per_seed / 2**20, "fit": fit, "free_gb": free / 2**30}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="cnn,resnet18")
    ap.add_argument("--seeds", default="1,2,4")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], int(a.child[1]), a.device, a.steps)))
        return
    print(f"{'model':<10} {'seeds':>5} {'members':>8} {'peak MB':>9} {'wall s':>7} {'footprint MB/seed':>18} "
          f"{'seeds that fit':>15}")
    for model in a.models.split(","):
        for n in (int(s) for s in a.seeds.split(",")):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", model, str(n), "--device", a.device,
                                  "--steps", str(a.steps)], capture_output=True, text=True)
            if out.returncode:
                print(f"{model:<10} {n:>5}  failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{model:<10} {n:>5} {3 * n:>8} {r['peak_mb']:>9.0f} {r['wall_s']:>7.1f} {r['per_seed_mb']:>18.1f} "
                  f"{r['fit']:>15}   ({r['members']}; {r['free_gb']:.1f} GB free)")


if __name__ == "__main__":
    main()
