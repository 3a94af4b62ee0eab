"""How USPS is framed matters to an MNIST-trained model: zero-shot accuracy with ``frame=stretch`` vs ``frame=mnist``.

Trains a small CNN on MNIST (2,000 images per class, 4 epochs, seed 0), then scores the untouched model on the
whole USPS test split read both ways. Prints the two accuracies; reads ../shared/data (or --shared DIR).

    python benchmarks/bench_usps_frame.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from transferlab.data.digitsets import arrays


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    root = Path(ap.parse_args().shared)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x, y = arrays("mnist", str(root / "mnist"), "train", None, (28, 28), 1, 2000)
    y = torch.as_tensor(y)
    net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 49, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.AdamW(net.parameters(), 2e-3)
    for _ in range(4):
        for idx in torch.randperm(len(x)).split(64):
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        xt, yt = arrays("mnist", str(root / "mnist"), "test", None, (28, 28), 1, 200)
        print(f"MNIST test accuracy: {100 * float((net(xt).argmax(1) == torch.as_tensor(yt)).float().mean()):.1f}%")
        for frame in ("stretch", "mnist"):
            xu, yu = arrays("usps", str(root / "usps"), "test", None, (28, 28), 1, None, 0, frame)
            acc = float((net(xu).argmax(1) == torch.as_tensor(yu)).float().mean())
            print(f"USPS zero-shot, frame={frame}: {100 * acc:.1f}% of {len(yu)} test digits")


if __name__ == "__main__":
    main()
