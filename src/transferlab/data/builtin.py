"""The embedded default: scikit-learn's bundled 8x8 digits, split by class.

Source D1 is digits 0-4 and target D2 is digits 5-9, the classic exercise
behind the users' question of whether a network trained on some digits helps
to learn the others.  Everything here is offline.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from transferlab.data.base import Split, TargetData, split_arrays

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)


def _digits(classes: tuple[int, ...]) -> tuple[torch.Tensor, np.ndarray]:
    bunch = load_digits()
    keep = np.isin(bunch.target, classes)
    x = torch.as_tensor(bunch.images[keep], dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8), values 0..16
    remap = {c: i for i, c in enumerate(classes)}
    y = np.array([remap[t] for t in bunch.target[keep]])
    return x, y


def digits_source() -> Split:
    x, y = _digits(SOURCE_CLASSES)
    return Split(x, torch.as_tensor(y, dtype=torch.long))


def digits_target(classes: tuple[int, ...] = TARGET_CLASSES, with_source: bool = True) -> TargetData:
    x, y = _digits(classes)
    source = digits_source() if with_source else None
    return split_arrays(x, y, [str(c) for c in classes], name=f"digits {classes[0]}-{classes[-1]}", source=source)
