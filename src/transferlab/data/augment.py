"""Augmentation that every strategy gets alike: V fixed augmented views of each training example.

A study's augmentation is drawn once: for each view ``v`` and each example ``i`` of the training pool
a table holds the random crop offset and flip.  Every epoch, each strategy picks one view per example
(with its own seeded generator), so scratch, fine-tuning and frozen strategies all draw their inputs
from the same V views.  A strategy whose first k blocks are frozen can then cache the prefix's
activations of each view (V prefix passes, once) and stay exact; an unfrozen one computes the view on
the fly from the same table.  V is ``StudyConfig.augment_views`` (8 by default): more views are
closer to fresh augmentation every epoch, and cost the cache one prefix pass each.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from transferlab.data.base import Split, take
from transferlab.errors import UserError

KINDS = ("crop", "flip")
PAD = 4  # pixels of replicate padding for the random crop


def parse_kinds(spec: str | None) -> tuple[str, ...]:
    kinds = {k.strip() for k in (spec or "").split(",") if k.strip() and k.strip() != "none"}
    unknown = kinds - set(KINDS)
    if unknown:
        raise UserError(f"unknown augmentation '{sorted(unknown)[0]}'", "use crop, flip, both (crop,flip) or none")
    return tuple(k for k in KINDS if k in kinds)


@dataclass(frozen=True)
class Augmentation:
    """Random crop (``PAD``-pixel replicate padding) and horizontal flip, per example, as V fixed views."""

    kinds: tuple[str, ...]
    views: int = 8
    seed: int = 0

    def table(self, n: int) -> dict[str, torch.Tensor]:
        """Each (view, example)'s draws: the same for every strategy and every trial of a study."""
        g = torch.Generator().manual_seed(self.seed)
        return {"flip": torch.rand(self.views, n, generator=g) < 0.5,
                "shift": torch.randint(0, 2 * PAD + 1, (self.views, n, 2), generator=g)}

    def apply(self, x: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, C, H, W) with per-example ``flip`` (batch,) and crop ``shift`` (batch, 2)."""
        if "flip" in self.kinds:
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if "crop" in self.kinds:
            h, w = x.shape[-2:]
            padded = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD), mode="replicate")
            x = torch.stack([p[:, dy:dy + h, dx:dx + w] for p, (dy, dx) in zip(padded, shift.tolist())])
        return x

    def view(self, pool: Split, v: int) -> Split:
        """View ``v`` of the whole training pool (what a frozen prefix is cached on)."""
        t = self.table(len(pool))
        return Split(self.apply(pool.inputs, t["flip"][v], t["shift"][v]), pool.y)

    def describe(self) -> dict:
        return {"kinds": list(self.kinds), "views": self.views, "seed": self.seed, "pad": PAD,
                "key": f"{'-'.join(self.kinds)}-v{self.views}-s{self.seed}"}

    def check(self, inputs) -> None:
        if not (torch.is_tensor(inputs) and inputs.dim() == 4):
            raise UserError(f"augmentation {','.join(self.kinds)} needs image inputs (batch, channels, height, width)",
                            "use --augment none for tables, text and other non-image data")


class OnTheFlyViews:
    """Training inputs for a strategy whose first layer trains: view v of example i computed when drawn."""

    def __init__(self, aug: Augmentation, inputs, pool_idx: torch.Tensor, pool_size: int):
        self.aug, self.inputs, self.pool_idx = aug, inputs, pool_idx
        self.table = aug.table(pool_size)
        self.views = aug.views

    def batch(self, idx: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        pool = self.pool_idx[idx]
        return self.aug.apply(take(self.inputs, idx), self.table["flip"][view, pool], self.table["shift"][view, pool])


class CachedViews:
    """Training inputs for a frozen prefix: the cached activations of each view, picked per example."""

    def __init__(self, per_view: list, pool_idx: torch.Tensor):
        self.per_view, self.pool_idx = per_view, pool_idx
        self.views = len(per_view)

    def batch(self, idx: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        pool = self.pool_idx[idx]
        first = take(self.per_view[0], pool[:1])
        out = torch.empty((len(idx), *first.shape[1:]), dtype=first.dtype)
        for v in view.unique().tolist():
            mask = view == v
            out[mask] = take(self.per_view[v], pool[mask])
        return out


def resolve(spec: str, default: Augmentation | None, views: int) -> Augmentation | None:
    """The study's augmentation: ``auto`` takes the data's label-preserving default (images: crop and flip;
    digits, tables, text and arrays: none), anything else names the kinds for every strategy."""
    from dataclasses import replace

    if spec == "auto":
        return replace(default, views=views) if default is not None else None
    kinds = parse_kinds(spec)
    return Augmentation(kinds, views=views) if kinds else None
