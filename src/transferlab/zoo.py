"""The demo's own source models, pretrained here and cached.

Two architectures, as in the users' questions: a 3-hidden-layer MLP (seeds
000/001) and a small CNN with BatchNorm, both pretrained on digits 0-4.  A third,
``cnn10``, is the same CNN pretrained on all ten digits, its 5-9s from half A of
those images only (see ``data.builtin``): a source that already knows the target's
classes from other people's handwriting.  Pretraining is deterministic and takes
seconds; the weights are cached as safetensors in the user's cache directory,
keyed by the recipe and the architecture, so later runs load them.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from transferlab.backbones.base import Backbone, Preprocessing
from transferlab.data.base import Split
from transferlab.data.builtin import ALL_CLASSES, SOURCE_CLASSES, digits_source
from transferlab.errors import UserError, closest
from transferlab.fitloop import evaluate, fit
from transferlab.results import temp_beside, write_atomic
from transferlab.training import Budget, param_groups

RECIPE = {"version": 2, "epochs": 40, "lr": 3e-3, "batch_size": 64, "seed": 0, "val_frac": 0.15}


def _mlp(n_classes: int = len(SOURCE_CLASSES)) -> tuple[list, nn.Module]:
    blocks = [
        ("fc1", nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU())),
        ("fc2", nn.Sequential(nn.Linear(128, 128), nn.ReLU())),
        ("fc3", nn.Sequential(nn.Linear(128, 64), nn.ReLU())),
    ]
    return blocks, nn.Linear(64, n_classes)


def _cnn(n_classes: int = len(SOURCE_CLASSES)) -> tuple[list, nn.Module]:
    # conv2 halves the grid by its stride, not by a max-pool after it: a training step of batch 32 on one thread
    # takes 2.2 ms, not 3.0 (a quarter of conv2's arithmetic, and no max-pool, 0.35 ms forward and back).
    blocks = [
        ("conv1", nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())),
        ("conv2", nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU())),
        ("conv3", nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten())),
    ]
    return blocks, nn.Linear(64, n_classes)


ARCHITECTURES = {"mlp": _mlp, "cnn": _cnn, "cnn10": _cnn}
# What each demo model is pretrained on: (classes, half of digits 5-9 it may see).
SOURCES = {"mlp": (SOURCE_CLASSES, None), "cnn": (SOURCE_CLASSES, None), "cnn10": (ALL_CLASSES, "A")}


def cache_dir() -> Path:
    root = os.environ.get("TRANSFERLAB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transferlab"
    path = Path(root) / "zoo"
    path.mkdir(parents=True, exist_ok=True)
    return path


class DemoConstructor:
    """The demo architecture's body, built afresh (the scratch control's initialisation); picklable."""

    def __init__(self, arch: str):
        self.arch = arch

    def __call__(self) -> nn.Module:
        return nn.ModuleDict(dict(ARCHITECTURES[self.arch](len(SOURCES[self.arch][0]))[0]))

    def __str__(self) -> str:
        return f"transferlab.zoo's {self.arch} constructor"


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown demo model '{arch}'{closest(arch, ARCHITECTURES)}", f"use one of: {', '.join(ARCHITECTURES)}")


def build(arch: str, preprocessing: Preprocessing | None = None) -> Backbone:
    _check_arch(arch)
    torch.manual_seed(0)
    classes = SOURCES[arch][0]
    blocks, head = ARCHITECTURES[arch](len(classes))
    pre = preprocessing or Preprocessing(kind="image", input_shape=(1, 8, 8))
    bb = Backbone(blocks, head, torch.zeros(2, 1, 8, 8), pre, [str(c) for c in classes],
                  spec={"source": f"demo:{arch}", "arch": arch})
    return bb.set_constructor(DemoConstructor(arch), nn.ModuleDict(dict(blocks)), str(DemoConstructor(arch)))


def _pretrain(arch: str) -> Backbone:
    src = digits_source(*SOURCES[arch])
    mean, std = float(src.inputs.mean()), float(src.inputs.std())
    pre = Preprocessing(kind="image", mean=(mean,), std=(std,), input_shape=(1, 8, 8))
    bb = build(arch, pre)
    gen = torch.Generator().manual_seed(RECIPE["seed"])
    perm = torch.randperm(len(src), generator=gen)
    n_val = int(len(src) * RECIPE["val_frac"])
    data = Split(pre.apply(src.inputs), src.y)
    train, val = data.subset(perm[n_val:]), data.subset(perm[:n_val])
    torch.manual_seed(RECIPE["seed"])
    # The recipe is fixed: exactly its passes, no extension, the best validation pass kept.
    budget = Budget(epochs=RECIPE["epochs"], patience=RECIPE["epochs"], extend=1, batch_size=RECIPE["batch_size"])
    fit(bb, param_groups(list(bb.blocks.values()), bb.head, RECIPE["lr"]), train, val, budget, gen)
    bb.spec["source_val_acc"] = evaluate(bb, val)[1]
    return bb


def pretrained(arch: str) -> Backbone:
    """The demo model ``arch`` pretrained on its source (``SOURCES``): loaded from the cache, or trained now and cached."""
    _check_arch(arch)
    # The architecture's printed form (blocks and head) is in the key: an edited one never loads older weights.
    blocks, head = ARCHITECTURES[arch](len(SOURCES[arch][0]))
    layers = repr(nn.ModuleList([*(m for _, m in blocks), head]))
    key = hashlib.sha1(json.dumps([arch, layers, RECIPE, SOURCES[arch], torch.__version__.split("+")[0]]).encode()).hexdigest()[:10]
    weights, meta = cache_dir() / f"{arch}-{key}.safetensors", cache_dir() / f"{arch}-{key}.json"
    if weights.exists() and meta.exists():
        info = json.loads(meta.read_text())
        bb = build(arch, Preprocessing.from_dict(info["preprocessing"]))
        bb.load_state_dict(load_file(weights))
        bb.spec.update(info["spec"])
        return bb
    bb = _pretrain(arch)
    tmp = temp_beside(weights)  # two first runs may pretrain at once: each writes its own file, the last one stays
    try:
        save_file({k: v.contiguous() for k, v in bb.state_dict().items()}, tmp)
        os.replace(tmp, weights)
    finally:
        tmp.unlink(missing_ok=True)
    write_atomic(meta, json.dumps({"preprocessing": bb.preprocessing.to_dict(), "spec": bb.spec}))
    return bb
