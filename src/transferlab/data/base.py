"""Target data: train pool, validation and a sealed test split.

Inputs are a tensor or a dict of tensors sharing the first axis (token ids and
masks for text), so one indexing rule serves every modality.  The test split is
sealed: reading it goes through ``open()``, which records who read it and when,
so a test can prove that nothing but the final evaluation touches it.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from transferlab.data.imagestore import Images
from transferlab.errors import UserError

Inputs = Any  # torch.Tensor | dict[str, torch.Tensor]


def tree_map(fn, inputs: Inputs) -> Inputs:
    """``fn`` applied to every array of a model input: a tensor (or array), a dict or a tuple/list of them.

    The one place that knows the shapes a model input takes; every helper below goes through it."""
    if isinstance(inputs, dict):
        return {k: fn(v) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(fn(v) for v in inputs)
    return fn(inputs)


def leaves(inputs: Inputs) -> list:
    """The arrays of a model input, in order."""
    out: list = []
    tree_map(out.append, inputs)
    return out


def take(inputs: Inputs, idx) -> Inputs:
    if isinstance(inputs, np.ndarray):  # raw texts, before tokenisation: numpy indexing
        return inputs[np.asarray(idx)]
    return tree_map(lambda v: v[idx], inputs)


def select(inputs: Inputs, idx) -> Inputs:
    """Rows ``idx`` kept in their storage: images held as bytes (``imagestore.Images``) stay bytes, a subset
    copies nothing; arrays are indexed as ``take`` does.  ``take`` is for the batch a model reads."""
    return tree_map(lambda v: v.select(idx) if isinstance(v, Images) else take(v, idx), inputs)


def to_device(inputs: Inputs, device, non_blocking: bool = False) -> Inputs:
    return tree_map(lambda v: v.to(device, non_blocking=non_blocking), inputs)


def trim_padding(inputs: Inputs) -> Inputs:
    """Right-padded token ids cut to the batch's longest text (over any leading dimensions).  Tokenised once,
    every text is padded to the longest of the whole data set; the padding beyond a batch's longest text changes
    nothing a masked model computes (attention gives it weight zero, pooling averages real tokens) and costs as
    much as real tokens.  Other inputs, and left-padded ids, are returned as they are."""
    mask = inputs.get("attention_mask") if isinstance(inputs, dict) else None
    if not torch.is_tensor(mask) or mask.dim() < 2 or mask.shape[-1] < 2:
        return inputs
    length = max(1, int(mask.sum(-1).max()))
    if length >= mask.shape[-1] or bool(mask[..., length:].any()):  # nothing to cut, or padded on the left
        return inputs
    return {k: v[..., :length] if torch.is_tensor(v) and v.shape == mask.shape else v for k, v in inputs.items()}


def n_rows(inputs: Inputs) -> int:
    return len(leaves(inputs)[0])


def concat(parts: list) -> Inputs:
    """Row-wise concatenation of inputs that share one structure.  Images held as bytes or files join on their
    storage (``Images.joined``: ValueError when they are on different storages)."""
    columns = [leaves(p) for p in parts]

    def join(i: int):
        first, parts = columns[0][i], [c[i] for c in columns]
        if isinstance(first, Images):
            return first.joined(parts[1:])
        width = max(p.shape[1] for p in parts) if first.ndim == 2 else None
        if width is not None and not first.is_floating_point():
            # Token ids and masks padded per split to its longest text: padded again, on the right, with 0. The
            # attention mask's 0 hides the new positions, so a model reads each text exactly as before.
            parts = [torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts]
        try:
            return torch.cat(parts)
        except RuntimeError as exc:
            raise ValueError(f"inputs of different shapes cannot be pooled ({exc})") from None

    joined = iter([join(i) for i in range(len(columns[0]))])
    return tree_map(lambda _: next(joined), parts[0])


def fingerprint_inputs(inputs: Inputs, y: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in [*leaves(inputs), y]:
        if isinstance(t, Images):  # images held as bytes or files: hashed without making floats
            h.update(t.digest().encode())
            continue
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Split:
    inputs: Inputs
    y: torch.Tensor
    # (cache key, rows) of a pool these rows were dealt from (a per-seed split of ``TargetData._held``): a cache
    # computes the pool's features once and hands each seed its rows.
    origin: tuple | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx) -> Split:
        idx = torch.as_tensor(idx, dtype=torch.long)
        origin = None if self.origin is None else (self.origin[0], np.asarray(self.origin[1])[idx.numpy()])
        return Split(select(self.inputs, idx), self.y[idx], origin)

    def fingerprint(self) -> str:
        return fingerprint_inputs(self.inputs, self.y)


class SealedSplit:
    """The test split. Only ``open(reason)`` hands out its data, and each call is logged.

    Input checks (its fingerprint, its label set, preprocessing it) go through ``open`` too, with a
    reason starting ``check:``, so the log lists every read and a test can tell checks from scoring.
    """

    def __init__(self, split: Split, log: list | None = None):
        self._split = split
        self.log: list[tuple[float, str]] = [] if log is None else log

    def open(self, reason: str) -> Split:
        self.log.append((time.perf_counter(), reason))
        return self._split

    def __len__(self) -> int:
        return len(self._split.y)

    def label_set(self) -> set[int]:
        return set(self.open("check:labels").y.unique().tolist())

    def fingerprint(self) -> str:
        return self.open("check:fingerprint").fingerprint()

    def label_digest(self) -> str:
        """A hash of the labels in order: whether two loads of a dataset made the same test split."""
        import hashlib

        return hashlib.sha1(self.open("check:labels").y.numpy().tobytes()).hexdigest()

    def mapped(self, fn, reason: str) -> SealedSplit:
        """``fn`` applied to the split (preprocessing), sealed again; one log, so reads of either are counted."""
        return SealedSplit(fn(self.open(f"check:{reason}")), self.log)


@dataclass
class TargetData:
    """The target dataset D2, split once with a fixed seed."""

    name: str
    class_names: list[str]
    train: Split  # the pool that training subsets are drawn from
    val: Split
    test: SealedSplit
    split_info: dict = field(default_factory=dict)
    source: Split | None = None  # optional D1 inputs, for similarity measures
    augment: Any = None  # the data's label-preserving default: a data.augment.Augmentation, or None
    # The held-out half of validation (``hold_out``): it scores each trial's chosen model and so ranks strategies,
    # while ``val`` chose that model's LR and step.  None: validation is too small to halve.
    holdout: Split | None = None
    per_seed: bool = False  # each seed draws its own validation and held-out examples (``resplit``, ``for_seed``)
    test_per_seed: bool = False  # ... and its own test examples (``--splits per_seed``; the default keeps test fixed)
    split_tag: str = ""  # one seed's splits ("@3"): part of their cache keys, so no two seeds share features
    # Validation and held-out rows (and test rows when test is redrawn too), pooled for the per-seed deal.
    _held: Split | None = field(default=None, repr=False, compare=False)
    _seeded: dict = field(default_factory=dict, repr=False, compare=False)

    def key(self, split: str) -> str:
        """The cache key of split ``split`` ("val", "holdout", "test") of these splits (a fixed test split has one)."""
        return split if split == "test" and not self.test_per_seed else f"{split}{self.split_tag}"

    def for_seed(self, seed: int) -> TargetData:
        """Seed ``seed``'s own splits when they are redrawn per seed (else these): the rows outside the training
        pool (validation, held-out and test) dealt again, stratified, in the same sizes, by ``seed``.  The training
        pool stays, so the nested training subsets stay too."""
        if not self.per_seed:
            return self
        if seed not in self._seeded:
            pool = self._held
            y = pool.y.numpy()
            rest, test = np.arange(len(y)), None
            if self.test_per_seed:
                rest, test = _deal(rest, y, len(self.test), seed)
            held = None
            if self.holdout is not None:
                rest, held = _deal(rest, y, len(self.holdout), seed)
            pick = lambda ix: pool.subset(np.sort(ix))  # noqa: E731
            self._seeded[seed] = replace(self, val=pick(rest), holdout=None if held is None else pick(held),
                                         test=self.test if test is None else SealedSplit(pick(test), self.test.log),
                                         per_seed=False, split_tag=f"@{seed}", _seeded={})
        return self._seeded[seed]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def per_class_counts(self) -> list[int]:
        return np.bincount(self.train.y.numpy(), minlength=self.n_classes).tolist()

    def train_indices(self, n_per_class: int | str, seed: int) -> np.ndarray:
        """Indices into the pool: ``n_per_class`` examples of each class.

        Nested across sizes for one seed (the 5-per-class set is inside the
        20-per-class set), so a size sweep changes only the amount of data.
        """
        y = self.train.y.numpy()
        if n_per_class == "all":
            return np.arange(len(y))
        rng = np.random.default_rng(seed)
        picked = []
        for c in range(self.n_classes):
            members = np.flatnonzero(y == c)
            if n_per_class > len(members):
                raise UserError(
                    f"size {n_per_class} per class is more than the {len(members)} training examples of class '{self.class_names[c]}'",
                    f"use sizes of at most {min(self.per_class_counts())} per class, or 'all'",
                )
            picked.append(rng.permutation(members)[:n_per_class])
        return np.sort(np.concatenate(picked))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for part in (self.train.fingerprint(), self.val.fingerprint(), self.test.fingerprint()):
            h.update(part.encode())
        if self.holdout is not None:
            h.update(self.holdout.fingerprint().encode())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "class_names": self.class_names,
            "n_train_pool": len(self.train),
            "n_val": len(self.val),
            "n_holdout": len(self.holdout) if self.holdout is not None else 0,
            "n_test": len(self.test),
            "train_per_class": self.per_class_counts(),
            "splits": self.split_info,
            "has_source": self.source is not None,
        }


def _check_split_options(val_frac, test_frac, seed, subsample) -> None:
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if not (number(val_frac) and number(test_frac) and 0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise UserError(f"val_frac {val_frac!r} and test_frac {test_frac!r} are not fractions in (0, 1) that leave "
                        "training examples", "use for example --data-opt val_frac=0.2 --data-opt test_frac=0.3")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise UserError(f"split seed {seed!r} is not a whole number of at least 0", "use --data-opt seed=0")
    if subsample is not None and not (isinstance(subsample, int) and not isinstance(subsample, bool) and subsample > 0):
        raise UserError(f"subsample {subsample!r} is not a positive number of examples", "use for example --data-opt subsample=2000")


def split_arrays(inputs: Inputs, y: np.ndarray, class_names: list[str], name: str,
                 val_frac: float = 0.2, test_frac: float = 0.3, seed: int = 0, subsample: int | None = None,
                 **kwargs) -> TargetData:
    """Stratified train/val/test split with a fixed seed (recorded in ``split_info``).

    ``subsample``: keep a stratified sample of this many examples first (a quick study of a big file).
    """
    y = np.asarray(y)
    if n_rows(inputs) != len(y):  # else the shorter one silently decides which rows exist
        raise UserError(f"{name} has {n_rows(inputs)} rows of inputs but {len(y)} labels",
                        "give exactly one label per input row")
    check_labels(y, class_names)
    _check_split_options(val_frac, test_frac, seed, subsample)
    idx = np.arange(len(y))
    try:
        if subsample and subsample < len(y):
            idx, _ = train_test_split(idx, train_size=subsample, stratify=y, random_state=seed)
            idx = np.sort(idx)
        rest, test = train_test_split(idx, test_size=test_frac, stratify=y[idx], random_state=seed)
        train, val = train_test_split(rest, test_size=val_frac / (1 - test_frac), stratify=y[rest], random_state=seed)
    except ValueError as exc:
        raise UserError(f"cannot make stratified splits of {name}: {exc}", "give more examples per class (at least 3)") from exc
    yt = torch.as_tensor(y, dtype=torch.long)
    part = lambda ix: Split(select(inputs, torch.as_tensor(ix)), yt[ix])  # noqa: E731
    info = {"method": "stratified", "seed": seed, "val_frac": val_frac, "test_frac": test_frac, "subsample": subsample}
    return TargetData(name, class_names, part(train), part(val), SealedSplit(part(test)), info, **kwargs)


MIN_HOLDOUT = 4  # rows: below this validation is not halved (a half of one or two examples ranks nothing)


def hold_out(data: TargetData, seed: int = 0) -> TargetData:
    """Validation halved, stratified with a fixed seed: ``val`` chooses each trial's LR, step and C, ``holdout``
    scores the model so chosen.

    Why: a strategy's best validation accuracy is the maximum over everything it tried (up to three LRs times
    every evaluation), a linear probe's over three values of C.  Ranking strategies on those maxima favours the
    one that tried more, and scores the winner on the examples that chose it.  On a half that chose nothing,
    equal strategies score equal in expectation, so the race's verdicts keep their error rate.
    """
    if data.holdout is not None or len(data.val) < 2 * MIN_HOLDOUT:
        return data
    y = data.val.y.numpy()
    keep, held = _deal(np.arange(len(y)), y, (len(y) + 1) // 2, seed)
    info = {**data.split_info, "holdout": f"half of validation, stratified where every class allows, seed {seed}"}
    return replace(data, val=data.val.subset(np.sort(keep)), holdout=data.val.subset(np.sort(held)), split_info=info)


def _deal(idx: np.ndarray, y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``idx`` split into (rest, ``size`` rows), stratified by ``y`` where every class allows it."""
    try:
        return train_test_split(idx, test_size=size, stratify=y[idx], random_state=seed)
    except ValueError:  # a class with a single row, or fewer rows to deal than classes
        return train_test_split(idx, test_size=size, random_state=seed)


PER_SEED_BELOW = 2000  # test examples: splits made here and this small are redrawn for every seed by default


def resplit(data: TargetData, mode: str = "auto") -> TargetData:
    """Which examples each seed draws anew (``TargetData.for_seed``).

    ``auto`` (the default): when the splits were made here (not given with the data), its inputs are arrays, and
    the test split has fewer than ``PER_SEED_BELOW`` examples, each seed deals its own validation and held-out
    examples from their pooled rows; **the test split stays one for the whole study**.  So the test split steers
    nothing: no choice (a leader, a recommendation, where seeds go) ever reads a row that some seed scored on
    test.  Which examples landed in test is then covered by the interval's per-example term on the shared test
    split (``analysis.stats``), not by redrawing it.  ``per_seed``: test is redrawn per seed too (the intervals
    then cover test sampling through the seeds; the choice across seeds has seen every pooled row).  ``fixed``:
    nothing is redrawn.
    """
    made_here = data.split_info.get("method") == "stratified"
    if mode == "per_seed" and not made_here:
        raise UserError("per-seed splits would redraw the splits this data gives (its own test split)",
                        "use --splits fixed")
    per_seed = mode == "per_seed" or (mode == "auto" and made_here and len(data.test) < PER_SEED_BELOW)
    test_per_seed = mode == "per_seed"
    per_seed = per_seed and (test_per_seed or data.holdout is not None or len(data.val) > 0)
    held = None
    if per_seed:  # pooled once, before any trial; with a fixed test split its rows are not pooled at all
        tested = [data.test.open("check:resplit")] if test_per_seed else []
        parts = [p for p in (data.val, data.holdout, *tested) if p is not None]
        y = torch.cat([p.y for p in parts])
        try:
            held = Split(concat([p.inputs for p in parts]), y, ("held", np.arange(len(y))))
        except ValueError:  # images on several storages, or inputs that cannot share one shape
            if mode == "per_seed":
                raise UserError("per-seed splits need the validation and test inputs on one storage and shape",
                                "use --splits fixed") from None
            per_seed = test_per_seed = False
    info = {**data.split_info, "per_seed": per_seed, "test_per_seed": per_seed and test_per_seed}
    return replace(data, per_seed=per_seed, test_per_seed=per_seed and test_per_seed, split_info=info, _held=held,
                   _seeded={})


def check_labels(y: np.ndarray, class_names: list[str]) -> None:
    present = np.unique(y)
    if len(present) and (not np.issubdtype(present.dtype, np.integer) or present[0] < 0 or present[-1] >= len(class_names)):
        bad = next(v for v in present if not (np.issubdtype(present.dtype, np.integer) and 0 <= v < len(class_names)))
        bad = int(bad) if np.issubdtype(present.dtype, np.integer) else bad.item() if hasattr(bad, "item") else bad
        raise UserError(f"label {bad!r} is not one of the {len(class_names)} classes named (codes 0 to {len(class_names) - 1})",
                        "give labels as codes 0..C-1 of the class names, or as the names themselves")
    if len(class_names) < 2 or len(present) < 2:
        raise UserError(
            f"the target has {len(present)} class{'es' if len(present) != 1 else ''}; a classifier needs at least 2",
            "check the label column, or add examples of other classes",
        )
