"""Benchmark: one AdamW step on resnet10t, the default multi-tensor kernel against the fused one.

fit() asks for the fused kernel (transferlab.training.make_optimizer); this prints what that saves per step,
next to the forward and backward passes of the same step.

    python benchmarks/bench_optimizer.py [--size 32] [--batch 32] [--steps 40]
"""
from __future__ import annotations

import argparse
import time

import timm
import torch
import torch.nn.functional as F


def step_times(fused: bool, size: int, batch: int, steps: int) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=5, in_chans=1)
    x, y = torch.randn(batch, 1, size, size), torch.randint(0, 5, (batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    fwd = bwd = upd = 0.0
    warmup = 5
    for i in range(steps + warmup):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= warmup:
            fwd, bwd, upd = fwd + t1 - t0, bwd + t2 - t1, upd + t3 - t2
    return 1e3 * fwd / steps, 1e3 * bwd / steps, 1e3 * upd / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=40)
    args = p.parse_args()
    print(f"resnet10t {args.size}px, batch {args.batch}, {torch.get_num_threads()} threads, ms per step (mean of {args.steps})")
    got = {}
    for fused in (False, True):
        got[fused] = step_times(fused, args.size, args.batch, args.steps)
        f, b, u = got[fused]
        print(f"  {'fused' if fused else 'multi-tensor':12s}  forward {f:6.1f}  backward {b:6.1f}  AdamW step {u:6.1f}")
    print(f"AdamW step: fused is {got[False][2] / got[True][2]:.1f}x faster; whole step "
          f"{sum(got[False]) / sum(got[True]):.2f}x")


if __name__ == "__main__":
    main()
