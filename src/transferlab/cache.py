"""Exact frozen-feature cache: the frozen prefix runs once per split, not once per epoch.

A trial whose first ``k`` blocks are frozen (in eval mode, inputs not
augmented) computes the same activations at cut ``k`` every epoch.  The cache
computes them once, in one pass that yields every cut the study asked for, and
trials train the suffix on them.  Smaller target sizes are slices of the same
arrays.

Entries are keyed by hashes of the weights, the data and the preprocessing, so
any change gives a new entry.  They stay in memory up to ``memory_budget``
bytes; beyond it (or always, with ``disk_dir`` and ``persist``) they are
written to ``disk_dir`` and memory-mapped, where a rerun or another worker
process finds them.  ``fp16`` halves their size (then cached results equal
uncached ones only to fp16 precision).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from transferlab.backbones.base import Backbone
from transferlab.data.base import Inputs, Split, concat, leaves, n_rows, take, to_device, tree_map

DEFAULT_BUDGET = 2 << 30  # 2 GiB


def _nbytes(states: Inputs) -> int:
    return sum(t.numel() * t.element_size() for t in leaves(states))


class FeatureCache:
    """Activations at cut points: in memory up to a budget, memory-mapped files beyond it.

    ``want(cuts)`` declares the cuts a study needs so a miss computes them all
    in a single forward pass.
    """

    def __init__(self, batch_size: int = 512, device="cpu", memory_budget: int = DEFAULT_BUDGET,
                 disk_dir: str | Path | None = None, fp16: bool = False, persist: bool = False):
        self.batch_size = batch_size
        self.device = device
        self.memory_budget = memory_budget
        self.disk_dir = Path(disk_dir) if disk_dir else None
        self.fp16 = fp16
        self.persist = persist
        self._mem: dict[tuple[str, str, int], Inputs] = {}
        self._wanted: set[int] = set()
        self.hits = 0
        self.passes = 0  # forward passes over a split
        self.disk_loads = 0

    def want(self, cuts: Iterable[int]) -> None:
        self._wanted.update(int(k) for k in cuts if k > 0)

    @property
    def memory_bytes(self) -> int:
        """Bytes held in RAM (memory-mapped entries are not counted: the OS pages them)."""
        return sum(_nbytes(s) for s in self._mem.values() if not getattr(s, "_mmap", False))

    def states(self, backbone: Backbone, model_key: str, split_key: str, split, k: int) -> Split:
        """The split with its inputs replaced by the activations at cut ``k``.

        ``split`` may be a function that makes the split, called only on a miss (an augmented view).
        """
        if k == 0:
            return split() if callable(split) else split
        key = (model_key, split_key, k)
        if key in self._mem:
            self.hits += 1
        elif not self._load(key):
            split = split() if callable(split) else split
            self._compute(backbone, model_key, split_key, split, sorted(self._wanted | {k}))
            return Split(self._unwrap(self._mem[key]), split.y)
        return Split(self._unwrap(self._mem[key]), split.y if isinstance(split, Split) else None)

    # ---- storage -----------------------------------------------------------------
    def _path(self, key: tuple[str, str, int], i: int) -> Path:
        model_key, split_key, k = key
        return self.disk_dir / f"{model_key}-{split_key}-cut{k}-{i}{'-fp16' if self.fp16 else ''}.npy"

    def _layout(self, states: Inputs) -> str:
        return "dict" if isinstance(states, dict) else "tuple" if isinstance(states, (tuple, list)) else "tensor"

    def _store(self, key, states: Inputs) -> None:
        if self.fp16:
            states = tree_map(lambda t: t.half() if t.is_floating_point() else t, states)
        spill = self.disk_dir is not None and (self.persist or self.memory_bytes + _nbytes(states) > self.memory_budget)
        if not spill:
            self._mem[key] = states
            return
        self.disk_dir.mkdir(parents=True, exist_ok=True)
        names = list(states.keys()) if isinstance(states, dict) else None
        for i, t in enumerate(leaves(states)):
            path = self._path(key, i)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, t.numpy())
            os.replace(tmp, path)  # atomic: another process sees all of it or none
        meta = {"layout": self._layout(states), "names": names, "n": len(leaves(states))}
        self._path(key, "meta").with_suffix(".txt").write_text(repr(meta))
        self._load(key)

    def _load(self, key) -> bool:
        if self.disk_dir is None:
            return False
        meta_path = self._path(key, "meta").with_suffix(".txt")
        if not meta_path.exists():
            return False
        import ast

        meta = ast.literal_eval(meta_path.read_text())
        # mmap_mode="c": copy-on-write pages, so torch gets a writable view without reading the file into RAM.
        parts = [torch.from_numpy(np.load(self._path(key, i), mmap_mode="c")) for i in range(meta["n"])]
        states = (dict(zip(meta["names"], parts)) if meta["layout"] == "dict"
                  else tuple(parts) if meta["layout"] == "tuple" else parts[0])
        self._mem[key] = _Mapped(states)
        self.disk_loads += 1
        return True

    def _unwrap(self, states):
        states = states.states if isinstance(states, _Mapped) else states
        if self.fp16:  # train on float32 as uncached trials do; only storage is half precision
            states = tree_map(lambda t: t.float() if t.is_floating_point() else t, states)
        return states

    @torch.no_grad()
    def _compute(self, backbone: Backbone, model_key: str, split_key: str, split: Split, cuts: list[int]) -> None:
        from transferlab.accel import autocast, placed

        was_training = backbone.training
        backbone.eval()
        blocks = list(placed(backbone, self.device).blocks.values())  # a device copy: the shared model stays put
        outs: dict[int, list] = {k: [] for k in cuts}
        n = n_rows(split.inputs)
        for start in range(0, n, self.batch_size):
            state = to_device(take(split.inputs, torch.arange(start, min(start + self.batch_size, n))), self.device)
            # The same autocast as training's forward pass, so that a cached prefix equals the uncached one on a GPU
            # too; stored in float32 (bf16 -> float32 -> bf16 is exact, so the suffix reads the same values).
            with autocast(self.device):
                for i, block in enumerate(blocks[: max(cuts)]):
                    state = block(state)
                    if i + 1 in outs:
                        outs[i + 1].append(tree_map(_float32, to_device(state, "cpu")))
        for k, parts in outs.items():
            self._store((model_key, split_key, k), concat(parts))
        self.passes += 1
        backbone.train(was_training)


class _Mapped:
    """Marks an entry whose tensors live in memory-mapped files."""

    _mmap = True

    def __init__(self, states):
        self.states = states


def _float32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t
