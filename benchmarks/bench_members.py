"""Members trained together against one at a time: training steps per second of a trial's LR candidates.

A trial trains its learning-rate candidates (three by default) on the same batches.  ``members.Cohort`` runs
them as one batched model (torch.func.vmap over stacked weights); alone, each takes its own forward and
backward pass.  This prints, per model and number of members, the member-steps per second both ways and the
ratio (batched / alone), on the device given (cpu by default; cuda where there is one).

    python benchmarks/bench_members.py                       # demo MLP and CNN, EfficientNet-Lite1 and resnet18 at 64 px
    python benchmarks/bench_members.py --device cuda --steps 60
    python benchmarks/bench_members.py --own-data --members 1,9   # a configuration's 3 seeds x 3 LRs, own batches
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
from transferlab.data.base import Split
from transferlab.members import Cohort
from transferlab.fitloop import FitRun
from transferlab.training import Budget, param_groups


def _models():
    from transferlab import zoo

    yield "demo MLP (8x8)", lambda: zoo.build("mlp"), (1, 8, 8)
    yield "demo CNN (8x8)", lambda: zoo.build("cnn"), (1, 8, 8)
    for name, arch in (("EfficientNet-Lite1 (64 px)", "efficientnet_lite1"), ("resnet18 (64 px)", "resnet18")):
        yield name, (lambda arch=arch: _timm(arch)), (3, 64, 64)


def _timm(arch: str):
    """The timm architecture (untrained: only its speed is measured) as the study builds it, with 5 classes."""
    from transferlab.sources import load_model

    bb = load_model(f"timm:{arch}").build(torch.zeros(2, 3, 64, 64))
    return bb.replace_head(5)


def _runs(make, shape, members: int, steps: int, device: str, own: bool = False) -> list[FitRun]:
    torch.manual_seed(0)
    x, y = torch.randn(256, *shape), torch.randint(0, 5, (256,))
    train, val = Split(x, y), Split(x[:64], y[:64])
    budget = Budget(steps=steps, eval_every=steps, patience=10**6, batch_size=32)
    base = make()
    runs = []
    for i in range(members):
        bb = copy.deepcopy(base).to(device)
        groups = param_groups(list(bb.blocks.values()), bb.head, 1e-3 * 3 ** i)
        # ``own``: each member draws its own batches (a configuration's seeds), so their inputs are stacked
        runs.append(FitRun(bb, groups, train, val, budget, torch.Generator().manual_seed(i if own else 0), device=device))
    return runs


def _rate(make, shape, members, steps, device, together: bool, own: bool = False) -> float:
    runs = _runs(make, shape, members, 2, device, own)  # warm-up: first calls allocate and pick kernels
    if together:
        Cohort(runs)
    for r in runs:
        r.finish()
    runs = _runs(make, shape, members, steps, device, own)
    if together:
        Cohort(runs)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for r in runs:
        r.finish()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return members * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--members", default="1,3,6")
    ap.add_argument("--only", default="", help="models whose name contains this")
    ap.add_argument("--own-data", action="store_true", help="each member draws its own batches (seeds), not the same")
    args = ap.parse_args()
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 32, "
          f"{args.steps} steps per member, {'own' if args.own_data else 'shared'} batches\n")
    print(f"{'model':28} {'members':>7} {'alone, steps/s':>15} {'batched, steps/s':>17} {'ratio':>6}")
    for name, make, shape in _models():
        if args.only and args.only.lower() not in name.lower():
            continue
        for m in [int(v) for v in args.members.split(",")]:
            alone = _rate(make, shape, m, args.steps, args.device, False, args.own_data)
            together = _rate(make, shape, m, args.steps, args.device, True, args.own_data) if m > 1 else float("nan")
            print(f"{name:28} {m:7d} {alone:15.1f} {together:17.1f} {together / alone:6.2f}", flush=True)


if __name__ == "__main__":
    main()
