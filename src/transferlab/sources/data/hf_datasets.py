"""``hf-datasets:PATH``: Hugging Face ``datasets`` on local files (``pip install "transferlab[hf]"``).

PATH is a folder written by ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``), or a folder the library's
builders read (``builder="imagefolder"``, ``"csv"``, ``"json"``, ``"parquet"``; ``imagefolder`` is tried when
none is named). The input column is an ``Image`` feature (images, read at the model's size), a free-text
column (text) or the numeric columns (a table); ``image_col``/``text_col`` name it, ``label_col`` the labels
(a ``ClassLabel`` keeps its names). Splits named train, validation (or valid, val, dev) and test are kept;
a single split is split like any other data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from transferlab.backbones.base import Preprocessing
from transferlab.data.base import split_arrays
from transferlab.data.images import given_splits, make_augment
from transferlab.data.tables import encode_labels
from transferlab.data.imagestore import DecodedImages
from transferlab.errors import UserError, closest
from transferlab.sources import DATA_SOURCES, image_size

VAL_NAMES = ("validation", "valid", "val", "dev")


def _load(path: str, builder: str | None):
    try:
        import datasets
    except ImportError:
        raise UserError("hf-datasets: needs the datasets library", 'pip install "transferlab[hf]"') from None
    if not Path(path).exists():
        raise UserError(f"dataset folder {path} does not exist", "give a folder written by save_to_disk, or a local data folder")
    try:
        if builder is None and any((Path(path) / f).exists() for f in ("dataset_dict.json", "dataset_info.json", "state.json")):
            ds = datasets.load_from_disk(path)
        else:
            ds = datasets.load_dataset(builder or "imagefolder", data_dir=path)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"cannot read {path} with the datasets library ({str(exc).splitlines()[0][:160]})",
                        'name the builder with --data-opt builder=csv (or json, parquet, imagefolder)') from None
    return ds if isinstance(ds, datasets.DatasetDict) else datasets.DatasetDict({"train": ds})


def _column(features: dict, wanted: str | None, kind: str, found: list[str], path: str) -> str | None:
    if wanted is not None and wanted not in features:
        raise UserError(f"{path} has no {kind} column '{wanted}'{closest(wanted, features)}",
                        f"its columns are: {', '.join(features)}")
    return wanted or (found[0] if found else None)


def _inputs(split, col: str | None, kind: str, size, channels: int):
    if kind == "image":
        mode = "L" if channels == 1 else "RGB"
        out = torch.empty((len(split), channels, *size), dtype=torch.uint8)  # filled in place: one copy, as bytes
        for i, im in enumerate(split[col]):
            a = np.array(im.convert(mode).resize((size[1], size[0])), dtype=np.uint8)  # writable: torch wraps it
            out[i] = torch.from_numpy(a[None] if channels == 1 else a.transpose(2, 0, 1))
        return DecodedImages(pixels=out)
    if kind == "text":
        return np.asarray([str(t) for t in split[col]], dtype=object)
    return torch.as_tensor(np.stack([np.asarray(split[c], dtype=np.float32) for c in col], axis=1))


@DATA_SOURCES.register("hf-datasets")
def hf_datasets_data(path: str, model=None, label_col: str = "label", image_col: str | None = None,
                     text_col: str | None = None, builder: str | None = None, size: list[int] | None = None,
                     channels: int | None = None, augment: str = "none", **split):
    import datasets

    ds = _load(path, builder)
    first = ds[next(iter(ds))]
    features = first.features
    if label_col not in features:
        raise UserError(f"{path} has no label column '{label_col}'{closest(label_col, features)}",
                        f"name it with --data-opt label_col=... (columns: {', '.join(features)})")
    images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
    strings = [c for c, f in features.items() if c != label_col and getattr(f, "dtype", None) in ("string", "large_string")]
    image_col = _column(features, image_col, "image", images, path)
    text_col = None if image_col else _column(features, text_col, "text", strings, path)
    kind, col = ("image", image_col) if image_col else ("text", text_col) if text_col else \
        ("table", [c for c in features if c != label_col])
    (h, w), c = image_size(model.preprocessing if model else Preprocessing())
    label = features[label_col]
    names = list(label.names) if isinstance(label, datasets.ClassLabel) else None
    if names is None:
        _, names = encode_labels(np.concatenate([np.asarray(ds[s][label_col]).astype(str) for s in ds]))
    parts = {}
    for s in ds:
        y = np.asarray(ds[s][label_col])
        y = y if isinstance(label, datasets.ClassLabel) else encode_labels(y.astype(str), names)[0]
        parts[s] = (_inputs(ds[s], col, kind, tuple(size or (h, w)), channels or c), y)
    aug = make_augment(augment) if kind == "image" else None
    name = Path(path).name
    val = next((v for v in VAL_NAMES if v in parts), None)
    if "train" in parts and "test" in parts:
        data = given_splits([parts["train"], *([parts[val]] if val else []), parts["test"]], names, name, aug)
    elif len(parts) == 1:
        data = split_arrays(*next(iter(parts.values())), names, name=name, augment=aug, **split)
    else:
        raise UserError(f"{path} has splits {', '.join(parts)}, not train and test", "name them train, validation and test")
    data.split_info.update({"source": "hf-datasets", "input": kind, "column": col})
    return data


hf_datasets_data.options_of = (split_arrays,)
