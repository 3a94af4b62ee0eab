"""Image folders: one subfolder per class (optionally under train/val/test), or a CSV of path,label.

Images are decoded with Pillow, resized to the model's input size and held in
memory as float tensors in [0, 1]; the model's mean/std are applied later.
Unreadable files are skipped and counted; too many of them is an error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from transferlab.data.base import SealedSplit, Split, TargetData, split_arrays
from transferlab.data.augment import Augmentation, parse_kinds
from transferlab.errors import UserError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_BAD_FRACTION = 0.1


def _load(paths: list[Path], size: tuple[int, int], channels: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    from PIL import Image, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    arrays, ok, bad = [], [], []
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im = im.convert(mode).resize((size[1], size[0]), Image.BILINEAR)
                arrays.append(np.asarray(im, dtype=np.uint8))
                ok.append(i)
        except (UnidentifiedImageError, OSError, ValueError):
            bad.append(str(p))
    if len(bad) > MAX_BAD_FRACTION * max(1, len(paths)):
        raise UserError(f"{len(bad)} of {len(paths)} image files cannot be read (first: {bad[0]})",
                        "remove or fix the corrupt files; a few (up to 10%) are skipped automatically")
    if not arrays:
        raise UserError("no readable images found", "check the folder layout: one subfolder per class")
    x = torch.from_numpy(np.stack(arrays)).float().div_(255)
    x = x.unsqueeze(1) if channels == 1 else x.permute(0, 3, 1, 2).contiguous()
    return x, np.array(ok), bad


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
                 **split) -> TargetData:
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
    names = sorted({lab for _, labels in given for lab in labels})
    index = {n: i for i, n in enumerate(names)}
    loaded = []
    skipped = 0
    for paths, labels in given:
        x, ok, bad = _load(paths, size, channels)
        skipped += len(bad)
        loaded.append((x, np.array([index[labels[i]] for i in ok])))
    aug = make_augment(augment)
    if len(loaded) == 1:
        data = split_arrays(loaded[0][0], loaded[0][1], names, name=root.name, augment=aug, **split)
    else:
        data = given_splits(loaded, names, root.name, aug)
    data.split_info["skipped_files"] = skipped
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
