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
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from transferlab.backbones.base import Backbone
from transferlab.data.base import Inputs, Split, concat, leaves, n_rows, take, to_device, tree_map
from transferlab.data.imagestore import in_order

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
        self._view_cuts: set[int] | None = None  # cuts a pass over an augmented view yields (None: the wanted ones)
        self._row_bytes: dict[str, dict[int, int]] = {}
        self.hits = 0
        self.passes = 0  # forward passes over a split
        self.disk_loads = 0
        self._pending = 0  # bytes of in-memory entries still being filled (``_Sink``)

    def row_bytes(self, backbone: Backbone, model_key: str, split: Split) -> dict[int, int]:
        """Bytes one example's activations take at each cut, as stored (one row through the body, remembered)."""
        if model_key not in self._row_bytes:
            from transferlab.accel import device_of

            was_training = backbone.training
            backbone.eval()
            state, sizes = to_device(take(split.inputs, torch.arange(1)), device_of(backbone)), {}
            with torch.no_grad():
                for i, block in enumerate(backbone.blocks.values()):
                    state = block(state)
                    sizes[i + 1] = sum(t.numel() * (2 if self.fp16 and t.is_floating_point() else 4) for t in leaves(state))
            backbone.train(was_training)
            self._row_bytes[model_key] = sizes
        return self._row_bytes[model_key]

    def holds(self, backbone: Backbone, model_key: str, split: Split, k: int, rows: int | None = None) -> bool:
        """Whether cut ``k``'s activations of ``rows`` examples (default: the split's) fit ``memory_budget``.
        Beyond it a cut is not cached: the frozen prefix runs each epoch (exact, slower), and the profile pools
        each batch as it goes, so memory stays bounded whatever the number of images."""
        if k == 0:
            return True
        rows = n_rows(split.inputs) if rows is None else rows
        return rows * self.row_bytes(backbone, model_key, split)[k] <= self.memory_budget

    def want(self, cuts: Iterable[int]) -> None:
        self._wanted.update(int(k) for k in cuts if k > 0)

    @property
    def wanted(self) -> frozenset[int]:
        return frozenset(self._wanted)

    def want_views(self, cuts: Iterable[int]) -> None:
        """The cuts that read the training pool's augmented views (the study's frozen configurations): a pass over
        a view yields only these, since no measurement reads a view and each view is a pass over the whole pool."""
        self._view_cuts = {int(k) for k in cuts if k > 0}

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
            view = callable(split)
            split = split() if view else split
            wanted = self._view_cuts if view and self._view_cuts is not None else self._wanted
            wanted = {c for c in wanted if not self._has((model_key, split_key, c))}  # a pass yields only what is missing
            self._compute(backbone, model_key, split_key, split, self._pass_cuts(backbone, model_key, split, k, wanted))
            return Split(self._unwrap(self._mem[key]), split.y)
        return Split(self._unwrap(self._mem[key]), split.y if isinstance(split, Split) else None)

    def _pass_cuts(self, backbone: Backbone, model_key: str, split: Split, k: int, wanted: set[int]) -> list[int]:
        """``k`` and the other ``wanted`` cuts one pass yields, while all of them together fit the budget
        (a pass holds each of its cuts for the whole split at once)."""
        sizes, rows = self.row_bytes(backbone, model_key, split), n_rows(split.inputs)
        cuts, total = [k], rows * sizes[k]
        for c in sorted(wanted - {k}):
            if total + rows * sizes[c] <= self.memory_budget:
                cuts.append(c)
                total += rows * sizes[c]
        return sorted(cuts)

    # ---- storage -----------------------------------------------------------------
    def _path(self, key: tuple[str, str, int], i: int) -> Path:
        model_key, split_key, k = key
        return self.disk_dir / f"{model_key}-{split_key}-cut{k}-{i}{'-fp16' if self.fp16 else ''}.npy"

    def _layout(self, states: Inputs) -> str:
        return "dict" if isinstance(states, dict) else "tuple" if isinstance(states, (tuple, list)) else "tensor"

    def _tmp_path(self, key: tuple[str, str, int], i: int) -> Path:
        """Where this process writes file ``i`` of ``key`` before moving it into place."""
        return self._path(key, i).with_suffix(f".tmp{os.getpid()}.npy")

    def _half(self, states: Inputs) -> Inputs:
        """``states`` as stored: floating arrays in half precision with ``fp16``."""
        return tree_map(lambda t: t.half() if t.is_floating_point() else t, states) if self.fp16 else states

    def _seal(self, key, tmps: list[Path], layout: str, names: list | None) -> None:
        """Move an entry's finished files into place, write its meta file last, and map it."""
        for i, tmp in enumerate(tmps):
            os.replace(tmp, self._path(key, i))  # atomic: another process sees all of it or none
        self._path(key, "meta").with_suffix(".txt").write_text(repr({"layout": layout, "names": names, "n": len(tmps)}))
        self._load(key)

    def _store(self, key, states: Inputs) -> None:
        states = self._half(states)
        if not self._spills(_nbytes(states)):
            self._mem[key] = states
            return
        self.disk_dir.mkdir(parents=True, exist_ok=True)
        tmps = []
        for i, t in enumerate(leaves(states)):
            tmps.append(self._tmp_path(key, i))
            np.save(tmps[-1], t.numpy())
        self._seal(key, tmps, self._layout(states), list(states.keys()) if isinstance(states, dict) else None)

    def _has(self, key) -> bool:
        """Whether ``key`` is held, in memory or in a finished file (not loaded here)."""
        return key in self._mem or (self.disk_dir is not None and self._path(key, "meta").with_suffix(".txt").exists())

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
        self._mem[key] = _Mapped(_assemble(meta["layout"], meta["names"], parts))
        self.disk_loads += 1
        return True

    def _unwrap(self, states):
        states = states.states if isinstance(states, _Mapped) else states
        if self.fp16:  # train on float32 as uncached trials do; only storage is half precision
            states = tree_map(lambda t: t.float() if t.is_floating_point() else t, states)
        return states

    @torch.no_grad()
    def _compute(self, backbone: Backbone, model_key: str, split_key: str, split: Split, cuts: list[int]) -> None:
        """One pass over ``split`` writing each cut's activations batch by batch into their final place (``_Sink``),
        so the peak is one entry per cut plus a batch, not the batches and their concatenation at once."""
        rows = n_rows(split.inputs)
        sinks = {k: _Sink(self, (model_key, split_key, k), rows) for k in cuts}
        try:
            for states in cut_states(backbone, split, cuts, self.batch_size, self.device):
                for k, state in states.items():
                    sinks[k].add(state)
        except BaseException as exc:  # nothing half-written stays (files, or memory counted against the budget)
            for sink in sinks.values():
                sink.discard()
            if not isinstance(exc, _Ragged):
                raise
            # batches of different shapes (never for padded splits): join them as they come
            outs: dict[int, list] = {k: [] for k in cuts}
            for states in cut_states(backbone, split, cuts, self.batch_size, self.device):
                for k, state in states.items():
                    outs[k].append(state)
            for k, parts in outs.items():
                self._store((model_key, split_key, k), concat(parts))
        else:
            try:
                for sink in sinks.values():
                    sink.close()
            except BaseException:
                for sink in sinks.values():
                    sink.discard()
                raise
        self.passes += 1

    def _spills(self, nbytes: int) -> bool:
        """Whether an entry of ``nbytes`` goes to disk (memory-mapped) rather than memory."""
        held = self.memory_bytes + self._pending + nbytes
        return self.disk_dir is not None and (self.persist or held > self.memory_budget)


def _like(t: torch.Tensor, rows: int) -> torch.Tensor:
    """An empty tensor for ``rows`` rows of batches like ``t``, in ``t``'s memory layout (channels_last maps stay so)."""
    out = torch.empty((rows, *t.shape[1:]), dtype=t.dtype)
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class _NpyWriter:
    """A ``.npy`` file of ``rows`` rows shaped like the batch ``t``, written row block by row block in order.  Plain
    file writes, not a memory map: the written pages are the OS's to flush, not this process's resident memory."""

    def __init__(self, path: Path, t: torch.Tensor, rows: int):
        self.dtype, self.shape, self.left = t.numpy().dtype, (rows, *t.shape[1:]), rows
        self.file = open(path, "wb")
        np.lib.format.write_array_header_1_0(self.file, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                         "fortran_order": False, "shape": self.shape})

    def write(self, t: torch.Tensor) -> None:
        if len(t) > self.left:
            raise _Ragged
        self.file.write(np.ascontiguousarray(t.numpy()).tobytes())
        self.left -= len(t)

    def close(self, complete: bool = True) -> None:
        self.file.close()
        if complete and self.left:
            raise ValueError(f"{self.left} rows were never written to {self.file.name}")


class _Ragged(Exception):
    """A batch whose activations do not have the first batch's shape."""


class _Sink:
    """One cut's activations of a whole split, filled batch by batch: a ``.npy`` file per array written in order when
    the entry goes to disk (then memory-mapped), else one preallocated tensor per array.  Stored as ``_store`` stores
    (fp16 if asked)."""

    def __init__(self, cache: FeatureCache, key: tuple, rows: int):
        self.cache, self.key, self.rows, self.done = cache, key, rows, 0
        self.arrays: list | None = None
        self.paths: list[Path] = []
        self.pending = 0  # bytes this entry will take in memory (counted by the cache's budget while it fills)

    def add(self, state: Inputs) -> None:
        state = self.cache._half(state)
        parts = leaves(state)
        if self.arrays is None:
            self._allocate(state, parts)
        if [tuple(t.shape[1:]) for t in parts] != [tuple(a.shape[1:]) for a in self.arrays]:
            raise _Ragged
        n = len(parts[0])
        for array, t in zip(self.arrays, parts):
            if isinstance(array, _NpyWriter):
                array.write(t)
            else:
                array[self.done: self.done + n] = t
        self.done += n

    def _allocate(self, state: Inputs, parts: list) -> None:
        self.layout = self.cache._layout(state)
        self.names = list(state.keys()) if isinstance(state, dict) else None
        nbytes = sum(self.rows * t[:1].numel() * t.element_size() for t in parts)
        if self.cache._spills(nbytes):
            self.cache.disk_dir.mkdir(parents=True, exist_ok=True)
            self.arrays = []
            for i, t in enumerate(parts):
                self.paths.append(self.cache._tmp_path(self.key, i))
                self.arrays.append(_NpyWriter(self.paths[-1], t, self.rows))
        else:
            self.pending = nbytes
            self.cache._pending += nbytes
            self.arrays = [_like(t, self.rows) for t in parts]

    def close(self) -> None:
        if self.arrays is None:  # an empty split
            return
        self.cache._pending -= self.pending
        self.pending = 0
        if not self.paths:
            self.cache._mem[self.key] = _assemble(self.layout, self.names, self.arrays)
            return
        for array in self.arrays:
            array.close()
        self.arrays = None
        self.cache._seal(self.key, self.paths, self.layout, self.names)

    def discard(self) -> None:
        """Undo an unfinished entry (a closed one, moved into place, stays)."""
        self.cache._pending -= self.pending
        for array in self.arrays or []:
            if isinstance(array, _NpyWriter):
                array.close(complete=False)
        self.pending, self.arrays = 0, None
        for tmp in self.paths:
            tmp.unlink(missing_ok=True)


def _assemble(layout: str, names: list | None, parts: list) -> Inputs:
    """An entry's arrays in the shape of the model input they came from (``FeatureCache._layout``)."""
    return dict(zip(names, parts)) if layout == "dict" else tuple(parts) if layout == "tuple" else parts[0]


class _Mapped:
    """Marks an entry whose tensors live in memory-mapped files."""

    _mmap = True

    def __init__(self, states):
        self.states = states


def _float32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.is_floating_point() and t.dtype != torch.float32 else t


def cut_states(backbone: Backbone, split: Split, cuts: list[int], batch_size: int, device) -> Iterator[dict]:
    """Per batch of ``split``, each cut's activations (float32, on the CPU): one pass through the prefix, in eval
    mode, on a device copy (the shared model stays put)."""
    from transferlab.accel import autocast, inference_copy

    was_training = backbone.training
    backbone.eval()
    # Laid out as training lays out the model (channels_last for a CNN), so a cached prefix equals the uncached one.
    blocks = list(inference_copy(backbone, device).blocks.values())
    try:
        for _, state in in_order(split.inputs, batch_size):
            state, out = to_device(state, device), {}
            # The same autocast as training's forward pass, so that a cached prefix equals the uncached one on a GPU
            # too; stored in float32 (bf16 -> float32 -> bf16 is exact, so the suffix reads the same values).
            with torch.no_grad(), autocast(device):
                for i, block in enumerate(blocks[: max(cuts)]):
                    state = block(state)
                    if i + 1 in cuts:
                        out[i + 1] = tree_map(_float32, to_device(state, "cpu"))
            yield out
    finally:
        backbone.train(was_training)


def pooled_pass(backbone: Backbone, split: Split, cuts: list[int], batch_size: int = 512, device="cpu") -> dict:
    """Each cut's activations pooled to (n, channels) in one pass, batch by batch: what per-layer scores read,
    without holding any cut's full activations (the profile of a split too big to cache)."""
    from transferlab.moved import pooled

    outs: dict[int, list] = {k: [] for k in cuts}
    for states in cut_states(backbone, split, cuts, batch_size, device):
        for k, state in states.items():
            outs[k].append(pooled(state))
    return {k: np.concatenate(parts) for k, parts in outs.items()}
