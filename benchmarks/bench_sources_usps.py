"""Which pretrained model, and which recipe, for USPS digits 0-4? Real data, two sources, the new recipes.

The script pretrains one small BatchNorm CNN twice on MNIST (../shared/data/mnist), 1,000 images per class,
4 epochs, seed 0: once on digits 0-4 (the target's classes, another handwriting) and once on digits 5-9 (other
classes). Both use MNIST's normalisation, so they share one scratch control. The target is USPS digits 0-4,
read in MNIST's framing (``frame=mnist``), with its official test split. Then one multi-source study runs
the same strategies on both sources: scratch, linear probe, head, bn_adapt (AdaBN), freeze_k(k=1) with and
without train_bn, surgical (each block), finetune and l2sp, at 10 and 50 examples per class, 5 seeds.

It prints each source's table, the source ranking and the recommendation, and leaves the study folder
(``--out``, default /tmp/bench-sources-usps) with both reports.

    python benchmarks/bench_sources_usps.py
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

import transferlab as tl
from transferlab.backbones.base import Backbone, Preprocessing
from transferlab.data.digitsets import arrays, target

MNIST_NORM = Preprocessing(kind="image", mean=(0.1307,), std=(0.3081,), input_shape=(1, 28, 28))


def blocks():
    def conv(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        return nn.Sequential(*layers, nn.MaxPool2d(2) if pool else nn.Identity())

    return [("conv1", conv(1, 16, True)), ("conv2", conv(16, 32, True)),
            ("conv3", nn.Sequential(conv(32, 64, False), nn.AdaptiveAvgPool2d(1), nn.Flatten()))]


def pretrain(root: Path, classes: str) -> Backbone:
    torch.manual_seed(0)
    x, y = arrays("mnist", str(root / "mnist"), "train", classes, (28, 28), 1, 1000)
    names = sorted(set(y.tolist()))
    bb = Backbone(blocks(), nn.Linear(64, len(names)), torch.zeros(2, 1, 28, 28), MNIST_NORM,
                  [str(int(c) + int(classes[0])) for c in names], {"source": f"bench:mnist-{classes}", "arch": "digitnet"})
    x, y = MNIST_NORM.apply(x), torch.as_tensor(y)
    opt = torch.optim.AdamW(bb.parameters(), 2e-3)
    bb.train()
    for _ in range(4):
        for idx in torch.randperm(len(x)).split(64):
            loss = nn.functional.cross_entropy(bb(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return bb.eval()


STRATEGIES = ["scratch", "linear_probe", {"name": "head", "params": {"depth": 1}}, "bn_adapt",
              {"name": "freeze_k", "params": {"k": 1}}, {"name": "freeze_k", "params": {"k": 1, "train_bn": True}},
              "surgical", "finetune", "l2sp"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out", default="/tmp/bench-sources-usps")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    root = Path(args.shared)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    sources = [pretrain(root, "0-4"), pretrain(root, "5-9")]
    print(f"pretrained both sources in {time.perf_counter() - t0:.0f} s")
    data = target("usps", str(root / "usps"), classes="0-4", size=(28, 28), frame="mnist")
    config = tl.StudyConfig(strategies=STRATEGIES, seeds=list(range(args.seeds)), sizes=[10, 50],
                            budget=tl.Budget(epochs=args.epochs, patience=4, batch_size=32, lrs=(1e-3, 3e-3, 1e-2)))
    t0 = time.perf_counter()
    result = tl.run_sources([tl.Source("mnist-0-4", sources[0], data), tl.Source("mnist-5-9", sources[1], data)],
                            config, args.out, meta={"title": "USPS 0-4: a CNN from MNIST 0-4, one from MNIST 5-9, or none?"})
    print(f"study: {time.perf_counter() - t0:.0f} s; trials run per source: "
          f"{[s.study['run']['trials_run'] for s in result.studies]}")
    for study in result.studies:
        a = study.analysis
        print(f"\n== {study.study['source']} (zero-shot {100 * a.zero_shot['test_acc']:.1f}%)" if a.zero_shot else
              f"\n== {study.study['source']}")
        for n in (10, 50):
            print(f"-- {n} per class: test acc % [95% CI], gain vs scratch pp [95% CI] verdict")
            for r in [r for r in a.accuracy if r.n_train == n]:
                g = a.gain(r.label, n)
                gain = (f"{100 * g.gain.mean:+5.1f} [{100 * g.gain.lo:+5.1f}, {100 * g.gain.hi:+5.1f}] {g.verdict}"
                        if g else "(control)")
                print(f"{r.label:32s} {100 * r.test_acc.mean:5.1f} [{100 * r.test_acc.lo:5.1f}, {100 * r.test_acc.hi:5.1f}]  {gain}")
    c = result.comparison
    print("\n== sources at 50 per class (validation order)")
    for x in c.rankings[-1].contestants:
        t = x.vs_leader_test
        vs = f"{100 * t.mean:+5.1f} [{100 * t.lo:+5.1f}, {100 * t.hi:+5.1f}] {t.verdict}" if t else "leader"
        print(f"{x.name:22s} {x.label:32s} val {100 * x.val_acc.mean:5.1f}  test {100 * x.test_acc.mean:5.1f}  {vs}")
    for s in c.scores:
        print(f"score {s.score}: ranks {s.ranks_first} first, Kendall tau {s.kendall_tau}")
    print(f"\nRecommendation: {c.recommendation['text']}")


if __name__ == "__main__":
    main()
