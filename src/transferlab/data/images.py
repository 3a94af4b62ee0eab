"""Image folders: one subfolder per class (optionally under train/val/test), or a CSV of path,label.

Images are decoded with Pillow and resized to the model's input size, then held as uint8 or read from their
files batch by batch (``data.imagestore``); the model reads float32 in [0, 1] with its mean/std applied.
Unreadable files are skipped and counted; too many of them is an error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from transferlab.data.base import SealedSplit, Split, TargetData, split_arrays
from transferlab.data.augment import Augmentation, parse_kinds
from transferlab.data.imagestore import STORAGES, DecodedImages, ImageFiles, decode_all, image_storage, unreadable
from transferlab.errors import UserError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_BAD_FRACTION = 0.1


def _load(paths: list[Path], size: tuple[int, int], channels: int, storage: str = "memory"):
    """``(images, positions read, unreadable paths)``: decoded once into uint8 (``memory``), or files checked
    and read when a batch needs them (``stream``)."""
    if storage == "stream":
        bad = unreadable(paths)
        images = ImageFiles(paths=tuple(str(p) for p in paths), size=tuple(size), channels=channels)
    else:
        pixels, bad = decode_all(paths, tuple(size), channels)
        images = DecodedImages(pixels=pixels)
    if len(bad) > MAX_BAD_FRACTION * max(1, len(paths)):
        raise UserError(f"{len(bad)} of {len(paths)} image files cannot be read (first: {paths[bad[0]]})",
                        "remove or fix the corrupt files; a few (up to 10%) are skipped automatically")
    ok = np.setdiff1d(np.arange(len(paths)), bad)
    if len(ok) == 0:
        raise UserError("no readable images found", "check the folder layout: one subfolder per class")
    return images.select(ok) if bad else images, ok, [str(paths[i]) for i in bad]


def _scan(root: Path) -> tuple[list[Path], list[str]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    paths, labels = [], []
    for c in classes:
        files = [f for f in sorted((root / c).rglob("*")) if f.is_file() and not f.name.startswith(".")]
        if not files:
            raise UserError(f"class folder {root / c} is empty", "add images to it or remove the folder")
        paths += files
        labels += [c] * len(files)
    return paths, labels


def image_target(path: str, size: tuple[int, int] = (224, 224), channels: int = 3, augment: str = "crop,flip",
                 storage: str = "auto", **split) -> TargetData:
    """``storage``: ``memory`` decodes every image once into uint8 at ``size``; ``stream`` reads each batch
    from its files (memory independent of the number of images); ``auto`` keeps up to 2 GiB of pixels in
    memory and streams beyond."""
    root = Path(path)
    if not root.exists():
        raise UserError(f"image data {root} does not exist", "give a folder with one subfolder per class, or a CSV of path,label")
    if root.is_file():
        table = pd.read_csv(root)
        if not {"path", "label"} <= set(table.columns):
            raise UserError(f"{root} needs columns 'path' and 'label' (it has: {', '.join(table.columns)})", "rename the columns")
        paths = [(root.parent / p) for p in table["path"]]
        given = [(paths, list(table["label"].astype(str)))]
    elif all((root / s).is_dir() for s in ("train", "test")):
        given = [_scan(root / s) for s in ("train", "val", "test") if (root / s).is_dir()]
    else:
        given = [_scan(root)]
    if storage not in STORAGES:
        raise UserError(f"unknown image storage '{storage}'", f"use one of: {', '.join(STORAGES)}")
    storage = image_storage(storage, sum(len(p) for p, _ in given), tuple(size), channels)
    names = sorted({lab for _, labels in given for lab in labels})
    index = {n: i for i, n in enumerate(names)}
    loaded = []
    skipped, first_bad = 0, None
    for paths, labels in given:
        x, ok, bad = _load(paths, size, channels, storage)
        skipped += len(bad)
        first_bad = first_bad or (bad[0] if bad else None)
        loaded.append((x, np.array([index[labels[i]] for i in ok])))
    aug = make_augment(augment)
    if len(loaded) == 1:
        data = split_arrays(loaded[0][0], loaded[0][1], names, name=root.name, augment=aug, **split)
    else:
        data = given_splits(loaded, names, root.name, aug)
    data.split_info.update(skipped_files=skipped, storage=storage, **({"first_skipped": first_bad} if first_bad else {}))
    return data


def given_splits(loaded: list, names: list[str], name: str, augment=None) -> TargetData:
    """Respect train/(val)/test splits the user made; without val, a stratified 20% of train becomes val."""
    from sklearn.model_selection import train_test_split

    from transferlab.data.base import check_labels

    parts = [Split(x, torch.as_tensor(y, dtype=torch.long)) for x, y in loaded]
    train, test = parts[0], parts[-1]
    check_labels(train.y.numpy(), names)
    if len(parts) == 3:
        val = parts[1]
    else:
        tr, va = train_test_split(np.arange(len(train)), test_size=0.2, stratify=train.y.numpy(), random_state=0)
        train, val = train.subset(tr), train.subset(va)
    info = {"method": "given", "val": "given" if len(parts) == 3 else "stratified 20% of train, seed 0"}
    return TargetData(name, names, train, val, SealedSplit(test), info, augment=augment)


def make_augment(spec: str | None) -> Augmentation | None:
    """The data's default augmentation (the study's ``augment = "auto"`` takes it): crop, flip, both or none."""
    kinds = parse_kinds(spec)
    return Augmentation(kinds) if kinds else None
