"""One training step on the CPU in the contiguous (NCHW) layout against channels_last, per model.

``accel.channels_last`` trains a CNN with grouped or depthwise convolutions in channels_last on the CPU, and any
other CNN in the plain layout; this measures why.
Each model trains batch 32 with fused AdamW in one process, the two layouts alternating (A, B, A, B) so that a
busy machine slows both alike; the figure is the faster of each layout's two runs.

    python benchmarks/bench_layout.py [--threads 2] [--steps 15]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def models():
    import timm

    from transferlab.zoo import pretrained

    yield "demo CNN (8x8, 1 channel)", lambda: pretrained("cnn"), (1, 8, 8), 5
    yield "resnet18 (64 px)", lambda: timm.create_model("resnet18", num_classes=10), (3, 64, 64), 10
    yield "efficientnet_lite1 (64 px)", lambda: timm.create_model("efficientnet_lite1", num_classes=10), (3, 64, 64), 10
    yield "mobilenetv3_small_050 (64 px)", lambda: timm.create_model("mobilenetv3_small_050", num_classes=10), (3, 64, 64), 10
    yield "convnext_atto (64 px)", lambda: timm.create_model("convnext_atto", num_classes=10), (3, 64, 64), 10
    yield "regnetx_002 (64 px)", lambda: timm.create_model("regnetx_002", num_classes=10), (3, 64, 64), 10


def step_ms(make, shape, n_classes: int, channels_last: bool, steps: int) -> float:
    from transferlab.fitloop import make_optimizer

    torch.manual_seed(0)
    model = make().train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x, y = torch.randn(32, *shape), torch.randint(n_classes, (32,))
    opt = make_optimizer([{"params": [p for p in model.parameters() if p.requires_grad], "lr": 1e-3}], 1e-4)
    for i in range(steps + 3):
        if i == 3:  # three warm-up steps
            t0 = time.perf_counter()
        logits = model(x)
        logits = logits if logits.shape[-1] == n_classes else logits[:, :n_classes]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(logits, y).backward()
        opt.step()
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} threads, batch 32, {args.steps} steps; ms per training step")
    print(f"{'model':32s} {'NCHW':>8s} {'channels_last':>14s} {'speed-up':>9s}")
    for name, make, shape, n in models():
        steps = args.steps * (20 if shape[-1] == 8 else 1)  # the tiny model: more steps for a stable figure
        runs = {cl: [] for cl in (False, True)}
        for _ in range(2):
            for cl in (False, True):
                runs[cl].append(step_ms(make, shape, n, cl, steps))
        a, b = min(runs[False]), min(runs[True])
        print(f"{name:32s} {a:8.1f} {b:14.1f} {a / b:8.2f}x")


if __name__ == "__main__":
    main()
