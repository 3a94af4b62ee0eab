"""Source models the tests pretrain themselves, on real data when ../shared is present."""
from __future__ import annotations

import numpy as np
import torch

from tests.conftest import SHARED_DATA


def digit_arrays(classes: str, per_class: int, size: int = 32, split: str = "train"):
    """MNIST digits from ../shared/data when present, else scikit-learn's 8x8 digits upscaled."""
    if (SHARED_DATA / "mnist").exists():
        from transferlab.data.digitsets import arrays

        return arrays("mnist", str(SHARED_DATA / "mnist"), split, classes, (size, size), 1, per_class)
    from sklearn.datasets import load_digits

    from transferlab.data.digitsets import parse_classes

    d = load_digits()
    keep = parse_classes(classes)
    idx = np.concatenate([np.flatnonzero(d.target == c)[:per_class] for c in keep])
    x = torch.as_tensor(d.images[idx] / 16.0, dtype=torch.float32).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, np.array([keep.index(t) for t in d.target[idx]])


def pretrain(model: torch.nn.Module, x: torch.Tensor, y, epochs: int = 3, lr: float = 2e-3, batch: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    y = torch.as_tensor(y)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(batch):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def import_written(folder, name: str):
    """Import a module the test wrote into ``folder`` without leaving it on sys.path."""
    import importlib
    import sys

    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


def assert_same_trial(with_cache, without) -> None:
    """A cached trial and its uncached twin: the same test accuracy and the same curve."""
    import pytest

    assert with_cache.status == without.status == "ok"
    assert with_cache.test_acc == pytest.approx(without.test_acc, abs=1e-9)
    assert (with_cache.holdout_acc is None) == (without.holdout_acc is None)
    if with_cache.holdout_acc is not None:
        assert with_cache.holdout_acc == pytest.approx(without.holdout_acc, abs=1e-9)
    for a, b in zip(with_cache.history, without.history):
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-9)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-6)
