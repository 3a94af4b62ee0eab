"""Which layers to keep, which to remove (seed 004), measured on two models.

1. The demo CNN (pretrained on digits 0-4 of scikit-learn's digits) on digits 5-9.
2. A real-data CNN: bench_sources_usps.py's BatchNorm CNN pretrained on MNIST digits 0-4 (../shared/data/mnist,
   1,000 images per class, 4 epochs, seed 0), on USPS digits 5-9 read in MNIST's framing, with USPS's official test
   split: other classes and another handwriting, the case where earlier cuts might transfer better.

Each runs scratch, a linear probe, a head and a truncated network (frozen and fine-tuned) at every cut, and
freeze_k(k=0) (the whole network fine-tuned, the reference), under the default step budget, fixed seeds, at 20
examples per class. It prints accuracy and parameters per cut, the smallest network decided equivalent to the
best (chosen on validation), and each configuration's verdict against scratch.

    python benchmarks/bench_keep.py [--seeds 5] [--only demo|usps]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import transferlab as tl

STRATEGIES = ["scratch", "linear_probe(cut=each)", "head(cut=each, depth=1)", "truncate", "truncate(tune=true)",
              "freeze_k(k=0)"]


def report(name: str, result, n: int) -> None:
    a = result.analysis
    print(f"\n== {name}: {n} per class, {result.study['run']['trials_run']} trials")
    print(f"{'configuration':28s} {'cut':>3s} {'params':>8s} {'ms/ex':>7s} {'val %':>6s} {'test % [95% CI]':>20s}  "
          "gain vs scratch pp [simultaneous CI] verdict")
    for p in a.keep.curves:
        if p.n_train != n:
            continue
        g = a.gain(p.label, n)
        gain = f"{100 * g.gain.mean:+5.1f} [{100 * g.gain.lo:+5.1f}, {100 * g.gain.hi:+5.1f}] {g.verdict}" if g else ""
        ms = f"{p.infer_ms:7.3f}" if p.infer_ms is not None else "       "
        print(f"{p.label:28s} {p.k if p.removes else '-':>3} {p.total_params:8,d} {ms} {100 * p.val_acc.mean:6.1f} "
              f"{100 * p.test_acc.mean:6.1f} [{100 * p.test_acc.lo:5.1f}, {100 * p.test_acc.hi:5.1f}]  {gain}")
    scratch = next(r for r in a.accuracy if r.label == "scratch" and r.n_train == n)
    print(f"{'scratch':28s} {'-':>3} {scratch.total_params:8,d} {'':7s} {100 * scratch.val_acc.mean:6.1f} "
          f"{100 * scratch.test_acc.mean:6.1f} [{100 * scratch.test_acc.lo:5.1f}, {100 * scratch.test_acc.hi:5.1f}]")
    print(a.keep.text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out", default="/tmp/bench-keep")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--only", choices=["demo", "usps"])
    args = ap.parse_args()
    torch.set_num_threads(2)
    config = tl.StudyConfig(strategies=STRATEGIES, seeds=list(range(args.seeds)), sizes=[20])
    if args.only != "usps":
        from transferlab import zoo
        from transferlab.data.builtin import digits_target

        t0 = time.perf_counter()
        result = tl.run_study(zoo.pretrained("cnn"), digits_target(), config, out=f"{args.out}/demo")
        print(f"demo CNN study: {time.perf_counter() - t0:.0f} s")
        report("demo cnn -> digits 5-9", result, 20)
    if args.only != "demo":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_sources_usps import pretrain

        from transferlab.data.digitsets import target

        root = Path(args.shared)
        t0 = time.perf_counter()
        source = pretrain(root, "0-4")
        data = target("usps", str(root / "usps"), classes="5-9", size=(28, 28), frame="mnist")
        result = tl.run_study(source, data, config, out=f"{args.out}/usps")
        print(f"MNIST 0-4 CNN -> USPS 5-9 study (pretraining included): {time.perf_counter() - t0:.0f} s")
        report("MNIST 0-4 CNN -> USPS 5-9", result, 20)


if __name__ == "__main__":
    main()
