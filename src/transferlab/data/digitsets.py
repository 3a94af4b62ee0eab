"""MNIST (idx files) and USPS (ESL text format) readers, for cross-dataset digit transfer.

Both keep their official train/test split.  ``classes`` picks digits
("5-9" or [5, 6, 7, 8, 9]); ``max_per_class`` subsamples the train split with a
fixed seed so a study stays small.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from transferlab.data.base import check_labels
from transferlab.data.images import given_splits, make_augment
from transferlab.errors import UserError

FILES = {
    "mnist": {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
    "usps": {"train": ("zip.train.gz",), "test": ("zip.test.gz",)},
}


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _read(kind: str, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = FILES[kind][split]
    missing = [n for n in names if not (root / n).exists()]
    if missing:
        raise UserError(f"{root} has no {missing[0]}", f"point {kind}: at the folder holding the {kind.upper()} files")
    if kind == "mnist":
        return _idx(root / names[0]).astype(np.float32) / 255.0, _idx(root / names[1]).astype(np.int64)
    table = np.loadtxt(root / names[0], dtype=np.float32)
    return ((table[:, 1:] + 1) / 2).reshape(-1, 16, 16), table[:, 0].astype(np.int64)


def parse_classes(classes) -> list[int]:
    if classes is None:
        return list(range(10))
    if isinstance(classes, str):
        lo, _, hi = classes.partition("-")
        return list(range(int(lo), int(hi or lo) + 1))
    return [int(c) for c in classes]


FRAMES = ("stretch", "mnist")


def mnist_frame(t: torch.Tensor) -> torch.Tensor:
    """Digits that fill their frame, fitted into a 20x20 box centred in 28x28, as MNIST's digits are."""
    t = F.interpolate(t, size=(20, 20), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    return F.pad(t, (4, 4, 4, 4))


def arrays(kind: str, path: str, split: str = "train", classes=None, size=(28, 28), channels: int = 1,
           max_per_class: int | None = None, seed: int = 0, frame: str = "stretch") -> tuple[torch.Tensor, np.ndarray]:
    """Images (N, channels, *size) in [0, 1] and labels renumbered 0..len(classes)-1."""
    if frame not in FRAMES:
        raise UserError(f"unknown frame '{frame}'", "use frame=stretch (the digit fills the image) or frame=mnist")
    x, y = _read(kind, Path(path), split)
    keep = parse_classes(classes)
    rng = np.random.default_rng(seed)
    idx = []
    for c in keep:
        members = np.flatnonzero(y == c)
        if max_per_class:
            members = np.sort(rng.permutation(members)[:max_per_class])
        idx.append(members)
    idx = np.sort(np.concatenate(idx))
    remap = {c: i for i, c in enumerate(keep)}
    t = torch.from_numpy(np.ascontiguousarray(x[idx])).unsqueeze(1)
    if frame == "mnist" and kind != "mnist":
        t = mnist_frame(t)
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=tuple(size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    return t.expand(-1, channels, -1, -1).contiguous(), np.array([remap[v] for v in y[idx]])


def target(kind: str, path: str, classes=None, size=(28, 28), channels: int = 1, max_per_class: int | None = None,
           max_test_per_class: int | None = None, augment: str = "none", seed: int = 0, frame: str = "stretch"):
    keep = parse_classes(classes)
    train = arrays(kind, path, "train", keep, size, channels, max_per_class, seed, frame)
    test = arrays(kind, path, "test", keep, size, channels, max_test_per_class, seed, frame)
    names = [str(c) for c in keep]
    check_labels(train[1], names)
    data = given_splits([train, test], names, f"{kind} {keep[0]}-{keep[-1]}", make_augment(augment))
    data.split_info.update({"source": kind, "classes": keep, "max_per_class": max_per_class, "frame": frame})
    return data
