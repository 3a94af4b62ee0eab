"""Array data: ``.npz`` files with X and y."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from transferlab.data.base import TargetData, split_arrays
from transferlab.errors import UserError


def encode_labels(y: np.ndarray, class_names=None) -> tuple[np.ndarray, list[str]]:
    """Labels of any type -> 0..C-1 with names kept (sorted unless names are given)."""
    if class_names is not None:
        names = [str(c) for c in class_names]
        if np.issubdtype(np.asarray(y).dtype, np.integer):
            return np.asarray(y, dtype=np.int64), names
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[str(v)] for v in y]), names
    values, codes = np.unique(np.asarray(y).astype(str) if np.asarray(y).dtype.kind in "OUS" else y, return_inverse=True)
    return codes.astype(np.int64), [str(v) for v in values]


def arrays_target(path: str, x_key: str = "X", y_key: str = "y", **split) -> TargetData:
    p = Path(path)
    try:
        arrays = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"data file {p} does not exist", "check the path") from None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{p} is not a readable .npz file ({exc})", "save it with numpy.savez(path, X=..., y=...)") from None
    missing = [k for k in (x_key, y_key) if k not in arrays.files]
    if missing:
        raise UserError(f"{p} has no array '{missing[0]}' (it has: {', '.join(arrays.files)})",
                        f"save the inputs as {x_key} and the labels as {y_key}")
    x = np.asarray(arrays[x_key])
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=tuple(range(1, x.ndim))).sum()) if x.ndim > 1 else int((~np.isfinite(x)).sum())
        raise UserError(f"{p}: {bad} rows of {x_key} contain NaN or inf", "impute or drop those rows first")
    y, names = encode_labels(arrays[y_key], arrays["class_names"] if "class_names" in arrays.files else None)
    return split_arrays(torch.as_tensor(x, dtype=torch.float32), y, names, name=p.stem, **split)
