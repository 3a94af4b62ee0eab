"""Augmentation that every strategy gets alike: V fixed augmented views of each training example.

A study's augmentation is drawn once: for each view ``v`` and each example ``i`` of the training pool
a table holds the random crop offset and flip.  At every step, each strategy picks one view per example in its batch
(with its own seeded generator), so scratch, fine-tuning and frozen strategies all draw their inputs
from the same V views.  A strategy whose first k blocks are frozen can then cache the prefix's
activations of each view (V prefix passes, once) and stay exact; an unfrozen one computes the view on
the fly from the same table.  V is ``StudyConfig.augment_views`` (8 by default): more views are
closer to fresh augmentation at every step, and cost the cache one prefix pass each.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from transferlab.data.base import Split, take
from transferlab.data.imagestore import Images
from transferlab.errors import UserError

KINDS = ("crop", "resized_crop", "flip")
PAD = 4  # pixels of replicate padding for the random crop
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # resized_crop: torchvision's RandomResizedCrop defaults


def parse_kinds(spec: str | None) -> tuple[str, ...]:
    kinds = {k.strip() for k in (spec or "").split(",") if k.strip() and k.strip() != "none"}
    unknown = kinds - set(KINDS)
    if unknown:
        raise UserError(f"unknown augmentation '{sorted(unknown)[0]}'",
                        "use crop, resized_crop, flip, a comma-separated set of them (crop,flip) or none")
    if {"crop", "resized_crop"} <= kinds:
        raise UserError("crop and resized_crop are two random crops; a view takes one", "choose one of them")
    return tuple(k for k in KINDS if k in kinds)


@dataclass(frozen=True)
class Augmentation:
    """Per example, as V fixed views: a random crop (``PAD``-pixel replicate padding) or torchvision's
    RandomResizedCrop (``resized_crop``: a box of 8-100% of the area, aspect 3/4-4/3, resized back to the
    image's size), and a horizontal flip.  Batches are augmented with torchvision.transforms.v2's functions,
    on the device the batch is on."""

    kinds: tuple[str, ...]
    views: int = 8
    seed: int = 0

    def table(self, n: int, size: tuple[int, int] = (224, 224)) -> dict[str, torch.Tensor]:
        """Each (view, example)'s draws: the same for every strategy and every trial of a study."""
        return _table(self, n, tuple(size))

    def apply(self, x: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor, box: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (batch, C, H, W) with per-example ``flip`` (batch,), crop ``shift`` (batch, 2) and resized-crop
        ``box`` (batch, 4: top, left, height, width)."""
        import torchvision.transforms.v2.functional as F

        h, w = x.shape[-2:]
        if "resized_crop" in self.kinds:
            x = torch.stack([F.resized_crop(img, *b, size=[h, w], antialias=True) for img, b in zip(x, box.tolist())])
        if "flip" in self.kinds:
            x = torch.where(flip.to(x.device)[:, None, None, None], F.horizontal_flip(x), x)
        if "crop" in self.kinds:
            padded = F.pad(x, [PAD] * 4, padding_mode="edge")
            x = torch.stack([p[:, dy:dy + h, dx:dx + w] for p, (dy, dx) in zip(padded, shift.tolist())])
        return x

    def draws(self, table: dict, view: torch.Tensor, rows: torch.Tensor) -> tuple:
        """The (flip, shift, box) arguments of ``apply`` for examples ``rows`` in views ``view``."""
        return table["flip"][view, rows], table["shift"][view, rows], table["box"][view, rows]

    def view(self, pool: Split, v: int) -> Split:
        """View ``v`` of the whole training pool (what a frozen prefix is cached on), computed batch by batch
        when it is read: an image pool held as bytes is never a float copy."""
        return Split(_View(self, pool.inputs, v), pool.y)

    def describe(self) -> dict:
        return {"kinds": list(self.kinds), "views": self.views, "seed": self.seed, "pad": PAD,
                "key": f"{'-'.join(self.kinds)}-v{self.views}-s{self.seed}"}

    def check(self, inputs) -> None:
        if not ((torch.is_tensor(inputs) or isinstance(inputs, Images)) and inputs.dim() == 4):
            raise UserError(f"augmentation {','.join(self.kinds)} needs image inputs (batch, channels, height, width)",
                            "use --augment none for tables, text and other non-image data")


@functools.lru_cache(maxsize=8)
def _table(aug: Augmentation, n: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    from torchvision.transforms import v2

    g = torch.Generator().manual_seed(aug.seed)
    out = {"flip": torch.rand(aug.views, n, generator=g) < 0.5,
           "shift": torch.randint(0, 2 * PAD + 1, (aug.views, n, 2), generator=g),
           "box": torch.zeros(aug.views, n, 4, dtype=torch.long)}
    if "resized_crop" in aug.kinds:  # torchvision's own sampling, under a seed of the study's and not the global one
        rrc, img = v2.RandomResizedCrop(size, scale=SCALE, ratio=RATIO), torch.empty(1, *size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(aug.seed)
            for v in range(aug.views):
                for i in range(n):
                    p = rrc.make_params([img])
                    out["box"][v, i] = torch.tensor([p["top"], p["left"], p["height"], p["width"]])
    return out


class _View:
    """View ``v`` of a pool's inputs, augmented batch by batch when rows are taken."""

    def __init__(self, aug: Augmentation, inputs, v: int):
        self.aug, self.inputs, self.v = aug, inputs, v
        self.streams = getattr(inputs, "streams", False)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, idx) -> torch.Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long)
        x = take(self.inputs, idx)
        table = self.aug.table(len(self.inputs), tuple(x.shape[-2:]))
        return self.aug.apply(x, *self.aug.draws(table, torch.full_like(idx, self.v), idx))


class OnTheFlyViews:
    """Training inputs for a strategy whose first layer trains: view v of example i computed when drawn,
    on the batch ``fit`` read (``reads_inputs``), on the training device."""

    reads_inputs = True

    def __init__(self, aug: Augmentation, inputs, pool_idx: torch.Tensor, pool_size: int):
        self.aug, self.inputs, self.pool_idx, self.pool_size = aug, inputs, pool_idx, pool_size
        self.views = aug.views

    def batch(self, idx: torch.Tensor, view: torch.Tensor, x=None, device="cpu") -> torch.Tensor:
        from transferlab.accel import move

        x = move(take(self.inputs, idx) if x is None else x, device)
        table = self.aug.table(self.pool_size, tuple(x.shape[-2:]))
        return self.aug.apply(x, *self.aug.draws(table, view, self.pool_idx[idx]))


class CachedViews:
    """Training inputs for a frozen prefix: the cached activations of each view, picked per example."""

    reads_inputs = False

    def __init__(self, per_view: list, pool_idx: torch.Tensor):
        self.per_view, self.pool_idx = per_view, pool_idx
        self.views = len(per_view)

    def batch(self, idx: torch.Tensor, view: torch.Tensor, x=None, device="cpu") -> torch.Tensor:
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
