"""Benchmark: the same transfer study three ways, on the same weights, splits, seeds and epochs.

1. transferlab default: exact frozen-feature cache + parallel worker processes;
2. transferlab with --no-cache and one worker (every epoch recomputes the frozen layers);
3. the way a fastai user runs the same strategies: Learner + freeze_to(k) + fit_one_cycle,
   unfreeze with discriminative learning rates.

Task: MNIST (../shared/data/mnist) digits 0-4 pretrain a timm resnet10t at 32 px (the script
does it), digits 5-9 are the target.  Each way runs in its own process so its peak memory
is its own.  It prints wall time, peak RSS, each strategy's test accuracy, and the ratios,
then the training-loop overhead of transferlab's fit() against a minimal hand-written loop.

    python benchmarks/bench_study.py [--mnist DIR] [--seeds 2] [--epochs 5] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
# fastai's lr_max=slice(lr/10, lr) spreads the body's LRs geometrically over its 5 groups below the head:
# block i gets lr * 10**(-1 + i/5).  transferlab says the same with explicit floats.
SLICE_STEP = 10 ** -0.2
STRATEGIES = [("head", {"depth": 1}), ("freeze_k", {"k": 4}), ("freeze_k", {"k": 3}), ("freeze_k", {"k": 2}),
              ("freeze_k", {"k": 1}), ("finetune", {"body_lr_mult": round(SLICE_STEP, 4), "layer_decay": round(SLICE_STEP, 4)})]
LR = 3e-3


def peak_rss_mb() -> float:
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def data_options(args) -> dict:
    return {"size": [SIZE, SIZE], "classes": "5-9", "max_per_class": args.per_class,
            "max_test_per_class": args.test_per_class, "augment": "none"}


def pretrain(args, path: Path) -> None:
    import timm
    import torch

    from transferlab.data.digitsets import arrays

    x, y = arrays("mnist", args.mnist, "train", "0-4", (SIZE, SIZE), 1, max_per_class=600)
    x = (x - 0.449) / 0.226
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", num_classes=5, in_chans=1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    y = torch.as_tensor(y)
    for _ in range(2):
        for idx in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def run_transferlab(args, weights: str, cache: bool, workers: int) -> dict:
    import transferlab as tl
    from transferlab.sources import resolve

    bb, data = resolve("timm:resnet10t", f"mnist:{args.mnist}", {"weights": weights}, data_options(args))
    cfg = tl.StudyConfig(seeds=list(range(args.seeds)), sizes=["all"], cache=cache, workers=workers,
                         executor="process" if workers > 1 else "inline",
                         budget=tl.Budget(epochs=args.epochs, patience=args.epochs, lrs=(LR,), schedule="onecycle"),
                         strategies=[{"name": n, "params": p} for n, p in STRATEGIES])
    t0 = time.perf_counter()
    res = tl.run_study(bb, data, cfg, report=False)
    wall = time.perf_counter() - t0
    acc = {r.label: r.test_acc.mean for r in res.analysis.accuracy}
    per, seeds = {}, {}
    for t in res.trials:
        per[t["label"]] = per.get(t["label"], 0.0) + t["wall_s"]
        seeds.setdefault(t["label"], []).append(t["test_acc"])
    return {"wall_s": wall, "acc": acc, "acc_seeds": seeds, "strategy_s": per}


def run_fastai(args, weights: str, adapt_bn: bool = False) -> dict:
    """``adapt_bn=False``: frozen means frozen (``BnFreeze``), as in transferlab. True: fastai's defaults,
    where BatchNorm inside frozen groups trains its affine weights and updates its statistics."""
    import torch
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.callback.training import BnFreeze
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.optimizer import Adam

    from transferlab.pipeline import prepare
    from transferlab.sources import resolve
    from transferlab.strategies.base import from_spec

    bb, data = resolve("timm:resnet10t", f"mnist:{args.mnist}", {"weights": weights}, data_options(args))
    data = prepare(data, bb)
    test = data.test.open("benchmark")
    pairs = lambda s: list(zip(s.inputs, s.y))  # noqa: E731
    t0 = time.perf_counter()
    acc: dict = {}
    per: dict = {}
    seeds: dict = {}
    for name, params in STRATEGIES:
        label = from_spec(name, params).label
        scores = []
        t_strategy = time.perf_counter()
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = bb.clone().replace_head(data.n_classes)
            groups = lambda m: [list(b.parameters()) for b in m.blocks.values()] + [list(m.head.parameters())]  # noqa: E731
            dls = DataLoaders(DataLoader(pairs(data.train), bs=32, shuffle=True, drop_last=False),
                              DataLoader(pairs(data.val), bs=512), device="cpu")
            learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, splitter=groups,
                            opt_func=Adam, wd=1e-4, train_bn=adapt_bn, cbs=[] if adapt_bn else [BnFreeze()])
            with learn.no_bar(), learn.no_logging():
                if name == "finetune":
                    learn.unfreeze()
                    learn.fit_one_cycle(args.epochs, lr_max=slice(LR / 10, LR))
                else:
                    learn.freeze_to(bb.n_blocks if name == "head" else params["k"])
                    learn.fit_one_cycle(args.epochs, LR)
            model.eval()
            with torch.no_grad():
                pred = torch.cat([model(test.inputs[i:i + 512]).argmax(1) for i in range(0, len(test), 512)])
            scores.append(float((pred == test.y).float().mean()))
        acc[label] = sum(scores) / len(scores)
        seeds[label] = scores
        per[label] = time.perf_counter() - t_strategy
    return {"wall_s": time.perf_counter() - t0, "acc": acc, "acc_seeds": seeds, "strategy_s": per}


def loop_overhead(args, weights: str, repeats: int = 3) -> dict:
    """transferlab's fit() against a minimal hand-written loop: same model, batches, optimizer and val pass."""
    import torch
    import torch.nn.functional as F

    from transferlab.pipeline import prepare
    from transferlab.sources import resolve
    from transferlab.fitloop import fit
    from transferlab.training import Budget, param_groups

    bb, data = resolve("timm:resnet10t", f"mnist:{args.mnist}", {"weights": weights}, data_options(args))
    data = prepare(data, bb)
    epochs = 2
    budget = Budget(epochs=epochs, patience=epochs, lrs=(LR,))  # constant LR: the hand loop has no schedule

    def ours():
        torch.manual_seed(0)
        m = bb.clone().replace_head(data.n_classes)
        t = time.perf_counter()
        fit(m, param_groups(list(m.blocks.values()), m.head, LR), data.train, data.val, budget, torch.Generator().manual_seed(0))
        return time.perf_counter() - t

    def hand():
        torch.manual_seed(0)
        m = bb.clone().replace_head(data.n_classes)
        opt = torch.optim.AdamW(m.parameters(), lr=LR, weight_decay=budget.weight_decay)
        g = torch.Generator().manual_seed(0)
        t = time.perf_counter()
        for _ in range(epochs):
            m.train()
            for idx in torch.randperm(len(data.train), generator=g).split(budget.batch_size):
                loss = F.cross_entropy(m(data.train.inputs[idx]), data.train.y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            m.eval()
            with torch.no_grad():
                for i in range(0, len(data.val), budget.eval_batch_size):
                    m(data.val.inputs[i:i + budget.eval_batch_size])
        return time.perf_counter() - t

    t_ours = min(ours() for _ in range(repeats))
    t_hand = min(hand() for _ in range(repeats))
    return {"fit_s": t_ours, "hand_s": t_hand, "overhead": t_ours / t_hand - 1}


def child(args) -> None:
    weights = args.weights
    if args.mode == "default":
        out = run_transferlab(args, weights, cache=True, workers=args.workers)
    elif args.mode == "cache1":
        out = run_transferlab(args, weights, cache=True, workers=1)
    elif args.mode == "nocache":
        out = run_transferlab(args, weights, cache=False, workers=1)
    elif args.mode == "fastai":
        out = run_fastai(args, weights)
    elif args.mode == "fastai_bn":
        out = run_fastai(args, weights, adapt_bn=True)
    else:
        out = loop_overhead(args, weights)
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--test-per-class", type=int, default=300)
    p.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    p.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        return child(args)
    if not Path(args.mnist, "train-images-idx3-ubyte.gz").exists():
        sys.exit(f"MNIST not found at {args.mnist}; pass --mnist DIR (the original idx .gz files)")
    os.environ.setdefault("TRANSFERLAB_CACHE", tempfile.mkdtemp())
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "r10t_mnist04.safetensors"
        t = time.perf_counter()
        pretrain(args, weights)
        print(f"pretrained resnet10t on MNIST 0-4 ({SIZE}px) in {time.perf_counter() - t:.0f} s")
        results = {}
        for mode in ("default", "cache1", "nocache", "fastai", "fastai_bn", "overhead"):
            cmd = [sys.executable, __file__, "--mode", mode, "--weights", str(weights), "--mnist", args.mnist,
                   "--seeds", str(args.seeds), "--epochs", str(args.epochs), "--workers", str(args.workers),
                   "--per-class", str(args.per_class), "--test-per-class", str(args.test_per_class)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
            results[mode] = json.loads(line[7:])
            print(f"{mode}: done in {results[mode].get('wall_s', results[mode].get('fit_s', 0)):.1f} s")
    report(results, args)


def _acc(x: dict, label: str) -> str:
    """Mean test accuracy over seeds, with the seeds' standard deviation, in points."""
    import statistics

    vals = [100 * v for v in x.get("acc_seeds", {}).get(label, [])]
    if not vals:
        return "nan"
    return f"{statistics.mean(vals):.1f} ±{statistics.stdev(vals) if len(vals) > 1 else 0.0:.1f}"


def report(r: dict, args) -> None:
    d, c, n, f, fb = r["default"], r["cache1"], r["nocache"], r["fastai"], r["fastai_bn"]
    cols = [(f"(1) {args.workers} workers", d), ("(1b) 1 process", c), ("(2) no cache", n), ("(3) fastai", f),
            ("(3b) fastai, BN adapts", fb)]
    print(f"\nstudy: {len(STRATEGIES)} strategies x {args.seeds} seeds, {args.epochs} epochs one-cycle, lr {LR}, "
          f"resnet10t 32px, MNIST 5-9 ({args.per_class}/class before the val split, {args.test_per_class}/class test), "
          f"{os.cpu_count()} CPUs")
    row = lambda name, cells: print(f"{name:34s}" + "".join(f"{x:>24s}" for x in cells))  # noqa: E731
    row("", [name for name, _ in cols])
    row("wall time, s", [f"{x['wall_s']:.1f}" for _, x in cols])
    row("peak RSS, MB", [f"{x['peak_rss_mb']:.0f}" for _, x in cols])
    for label in c["acc"]:
        row("test acc " + label, [_acc(x, label) for _, x in cols])
    for label in c["acc"]:
        row("train s " + label, [f"{x['strategy_s'].get(label, float('nan')):.1f}" for _, x in cols])
    best = min(d["wall_s"], c["wall_s"])
    print(f"\nspeed-up (1) vs (3) fastai:    {f['wall_s'] / d['wall_s']:.1f}x   (1b): {f['wall_s'] / c['wall_s']:.1f}x   (target >= 5x)")
    print(f"speed-up (1) vs (2) no cache:  {n['wall_s'] / d['wall_s']:.1f}x   (1b): {n['wall_s'] / c['wall_s']:.1f}x   (target >= 3x)")
    for label in c["acc"]:
        print(f"  per strategy {label:44s} (2)/(1b) {n['strategy_s'][label] / c['strategy_s'][label]:5.1f}x   "
              f"(3)/(1b) {f['strategy_s'][label] / c['strategy_s'][label]:5.1f}x")
    # The ceiling: a cache can remove only the frozen prefix. Strategies that train from block 0 cost what they cost.
    uncachable = sum(v for k, v in c["strategy_s"].items() if k.startswith("finetune"))
    print(f"ceiling if every cached strategy took no time at all: (3)/(1b) <= {f['wall_s'] / uncachable:.1f}x, "
          f"(2)/(1b) <= {n['wall_s'] / uncachable:.1f}x  (finetune took {uncachable:.1f} s; "
          f"the best transferlab way took {best:.1f} s)")
    worst = max(abs(c["acc"][k] - f["acc"][k]) for k in c["acc"])
    print(f"largest accuracy gap (1b) vs (3): {100 * worst:.1f} points   (target <= 1)")
    o = r["overhead"]
    print(f"fit() vs a minimal hand-written loop: {o['fit_s']:.2f} s vs {o['hand_s']:.2f} s, overhead "
          f"{100 * o['overhead']:+.1f}%   (target <= 5%)")


if __name__ == "__main__":
    main()
