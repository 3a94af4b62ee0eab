"""The embedded default: scikit-learn's bundled 8x8 digits, split by class.

Source D1 is digits 0-4 and target D2 is digits 5-9, the classic exercise
behind the users' question of whether a network trained on some digits helps
to learn the others.  Everything here is offline.

The demo also needs a source that does help.  Digits 5-9 are split once, with a
fixed seed, into two halves: half A can join a source (a model that has seen other
people's 5-9s), and half B is then the target, so no image is in both.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from transferlab.data.base import Split, TargetData, split_arrays

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
ALL_CLASSES = tuple(range(10))
HALF_SEED = 0


def _digits(classes: tuple[int, ...], half: str | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Images of ``classes`` (labels renumbered 0..), optionally only half "A" or "B" of the target classes."""
    bunch = load_digits()
    keep = np.flatnonzero(np.isin(bunch.target, classes))
    if half is not None:
        target = np.flatnonzero(np.isin(bunch.target, TARGET_CLASSES))
        a, b = train_test_split(target, test_size=0.5, stratify=bunch.target[target], random_state=HALF_SEED)
        other = {"A": b, "B": a}[half]  # drop the other half of the target classes
        keep = np.setdiff1d(keep, other)
    x = torch.as_tensor(bunch.images[keep], dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8), values 0..16
    remap = {c: i for i, c in enumerate(classes)}
    y = np.array([remap[t] for t in bunch.target[keep]])
    return x, y


def digits_source(classes: tuple[int, ...] = SOURCE_CLASSES, half: str | None = None) -> Split:
    x, y = _digits(classes, half)
    return Split(x, torch.as_tensor(y, dtype=torch.long))


def digits_target(classes: tuple[int, ...] = TARGET_CLASSES, with_source: bool = True, half: str | None = None,
                  val_frac: float = 0.2, test_frac: float = 0.3) -> TargetData:
    """Digits 5-9 (``half="B"``: only the half no demo source has seen)."""
    x, y = _digits(classes, half)
    source = digits_source() if with_source else None
    name = f"digits {classes[0]}-{classes[-1]}" + (f" (half {half})" if half else "")
    return split_arrays(x, y, [str(c) for c in classes], name=name, source=source, val_frac=val_frac,
                        test_frac=test_frac)
