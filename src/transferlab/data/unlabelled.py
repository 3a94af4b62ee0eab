"""New inputs without labels, for ``predict``: a flat folder of images, a text file of one sentence per line,
or a table without its label column. Each input keeps its name (the image's path, the sentence, the row)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from transferlab.backbones.base import Preprocessing
from transferlab.data.images import EXTENSIONS, _load
from transferlab.errors import UserError

SCHEMES = ("images", "text", "table", "npz")


def _images(paths: list[Path], pre: Preprocessing):
    shape = pre.input_shape if pre.input_shape and len(pre.input_shape) == 3 else (3, 224, 224)
    x, ok, bad = _load(paths, (shape[1], shape[2]), shape[0])
    return x, [str(paths[i]) for i in ok]


def _arrays(path: Path, x_key: str, y_key: str):
    from transferlab.data.tables import load_npz

    arrays = load_npz(path)
    if y_key in arrays.files:
        return None
    if x_key not in arrays.files:
        raise UserError(f"{path} has no array '{x_key}' (it has: {', '.join(arrays.files) or 'none'})",
                        "save the inputs as X, or name their array with --data-opt x_key=...")
    try:
        x = np.asarray(arrays[x_key], dtype=np.float32)
    except ValueError as exc:
        raise UserError(f"{path}: array '{x_key}' is not numbers ({exc})", "save the inputs as a numeric array") from None
    if not np.isfinite(x).all():
        raise UserError(f"{path}: {x_key} contains NaN or inf", "impute or drop those rows first")
    return torch.as_tensor(x), [str(i) for i in range(len(x))]


def read_unlabelled(spec: str, pre: Preprocessing, label_col: str = "label", text_col: str = "text",
                    path_col: str = "path", x_key: str = "X", y_key: str = "y", table: dict | None = None):
    """``(inputs, names)`` when ``spec`` holds inputs without labels; None when it is labelled data.  ``table``: the
    feature columns and categories a model was trained on (its ``model.json``): a table's new rows are encoded alike
    and matched to them by name."""
    scheme, sep, rest = spec.partition(":")
    path = Path(rest if sep and scheme in SCHEMES else spec)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS)
        labelled = any(d.is_dir() for d in path.iterdir())
        return _images(files, pre) if files and not labelled else None
    if not path.is_file():
        return None
    if path.suffix.lower() == ".txt" and pre.kind == "text":
        lines = [x for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        return None if any("\t" in x for x in lines) else (np.asarray(lines, dtype=object), lines)
    if path.suffix.lower() == ".npz":  # arrays: X without y is new inputs
        return _arrays(path, x_key, y_key)
    if path.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".parquet"):
        return None
    from transferlab.data.tables import read_frame

    frame = read_frame(str(path))
    if label_col in frame.columns:
        return None
    if pre.kind == "text":
        col = text_col if text_col in frame.columns else (frame.columns[0] if len(frame.columns) == 1 else None)
        if col is None:
            raise UserError(f"{path} has no text column '{text_col}'", f"name it with --data-opt text_col=... "
                            f"(columns: {', '.join(map(str, frame.columns))})")
        texts = frame[col].astype(str).tolist()
        return np.asarray(texts, dtype=object), texts
    if path_col in frame.columns:
        return _images([path.parent / p for p in frame[path_col]], pre)
    if table is not None and table.get("features"):
        return _as_table(frame, table, path), [str(i) for i in range(len(frame))]
    text = [str(c) for c in frame.columns if not np.issubdtype(frame[c].dtype, np.number)]
    if text:
        raise UserError(f"{path} has non-numeric columns ({', '.join(text)}), which new rows cannot be encoded by",
                        "give the new rows as numbers, in the columns the model was trained on")
    return torch.as_tensor(frame.to_numpy(dtype=np.float32)), [str(i) for i in range(len(frame))]


def _as_table(frame, table: dict, path) -> torch.Tensor:
    """New rows of a table in the trained model's columns: its text columns one-hot by name, then matched by name."""
    import pandas as pd

    from transferlab.data.tables import align_columns

    if frame.isna().any().any():
        raise UserError(f"{path}: {int(frame.isna().any(axis=1).sum())} rows have missing values (first column: "
                        f"'{frame.columns[frame.isna().any()][0]}')", "impute or drop those rows first")
    cats = [c for c in frame.columns if c in table.get("categories", {})
            or not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    encoded = pd.get_dummies(frame.astype({c: str for c in cats}), columns=cats, dtype=float)
    x = torch.as_tensor(encoded.to_numpy(dtype=np.float32))
    if not torch.isfinite(x).all():
        raise UserError(f"{path}: {int((~torch.isfinite(x)).any(1).sum())} rows hold missing or infinite values",
                        "impute or drop those rows first")
    return align_columns(x, [str(c) for c in encoded.columns], table["features"], table.get("categories", {}), path)
