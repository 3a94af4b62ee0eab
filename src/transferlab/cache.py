"""Exact frozen-feature cache: the frozen prefix runs once per split, not once per epoch.

A trial whose first ``k`` blocks are frozen (in eval mode, inputs not
augmented) computes the same activations at cut ``k`` every epoch.  The cache
computes them once, in one pass that yields every cut the study asked for, and
trials train the suffix on them.  Keys are hashes of the weights, the data and
the preprocessing, so any change gives a new entry.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from transferlab.backbones.base import Backbone
from transferlab.data.base import Inputs, Split, concat, n_rows, take, to_device


def _nbytes(states: Inputs) -> int:
    if isinstance(states, dict):
        return sum(v.numel() * v.element_size() for v in states.values())
    if isinstance(states, (tuple, list)):
        return sum(v.numel() * v.element_size() for v in states)
    return states.numel() * states.element_size()


class FeatureCache:
    """Activations at cut points, in memory.

    ``want(cuts)`` declares the cuts a study needs so a miss computes them all
    in a single forward pass.
    """

    def __init__(self, batch_size: int = 512, device="cpu"):
        self.batch_size = batch_size
        self.device = device
        self._store: dict[tuple[str, str, int], Inputs] = {}
        self._wanted: set[int] = set()
        self.hits = 0
        self.passes = 0  # forward passes over a split (one per split per model)

    def want(self, cuts: Iterable[int]) -> None:
        self._wanted.update(int(k) for k in cuts if k > 0)

    @property
    def nbytes(self) -> int:
        return sum(_nbytes(s) for s in self._store.values())

    def states(self, backbone: Backbone, model_key: str, split_key: str, split: Split, k: int) -> Split:
        """The split with its inputs replaced by the activations at cut ``k``."""
        if k == 0:
            return split
        key = (model_key, split_key, k)
        if key in self._store:
            self.hits += 1
        else:
            self._compute(backbone, model_key, split_key, split, sorted(self._wanted | {k}))
        return Split(self._store[key], split.y)

    @torch.no_grad()
    def _compute(self, backbone: Backbone, model_key: str, split_key: str, split: Split, cuts: list[int]) -> None:
        was_training = backbone.training
        backbone.eval()
        blocks = list(backbone.blocks.values())
        outs: dict[int, list] = {k: [] for k in cuts}
        n = n_rows(split.inputs)
        for start in range(0, n, self.batch_size):
            state = take(split.inputs, torch.arange(start, min(start + self.batch_size, n)))
            state = to_device(state, self.device)
            for i, block in enumerate(blocks[: max(cuts)]):
                state = block(state)
                if i + 1 in outs:
                    outs[i + 1].append(to_device(state, "cpu"))
        for k, parts in outs.items():
            self._store[(model_key, split_key, k)] = concat(parts)
        self.passes += 1
        backbone.train(was_training)

