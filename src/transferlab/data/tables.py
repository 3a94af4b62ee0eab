"""Array and table data: ``.npz`` with X and y; CSV/Parquet with a target column."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from transferlab.data.base import TargetData, split_arrays
from transferlab.errors import UserError, closest


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


def load_npz(p: Path):
    try:
        return np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"data file {p} does not exist", "check the path") from None
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"{p} is not a readable .npz file ({exc})", "save it with numpy.savez(path, X=..., y=...)") from None


def arrays_target(path: str, x_key: str = "X", y_key: str = "y", **split) -> TargetData:
    p = Path(path)
    arrays = load_npz(p)
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


def _column(frame: pd.DataFrame, name: str, role: str, path) -> str:
    if name in frame.columns:
        return name
    raise UserError(f"{path} has no {role} column '{name}'{closest(name, [str(c) for c in frame.columns])}",
                    f"name the {role} column with {role}_col=... (columns: {', '.join(map(str, frame.columns))})")


def read_frame(path: str, sep: str | None = None, header: bool = True, columns: list[str] | None = None) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise UserError(f"data file {p} does not exist", "check the path")
    try:
        if p.suffix == ".parquet":
            return pd.read_parquet(p)
        if p.suffix in (".jsonl", ".json"):
            return pd.read_json(p, lines=p.suffix == ".jsonl")
        sep = sep or ("\t" if p.suffix in (".tsv", ".txt") else ",")
        if sep != "\t":
            return pd.read_csv(p, sep=sep, header=0 if header else None, names=columns)
        # Tab-separated text: split on '\n' only (sentences may hold other Unicode line breaks), no quoting.
        frame = pd.read_csv(p, sep=sep, header=0 if header else None, names=columns, quoting=3, lineterminator="\n")
        frame.columns = [str(c).strip() for c in frame.columns]
        # pandas 3 reads text as the "str" dtype, older pandas as object: strip a CR from either.
        return frame.apply(lambda c: c.str.rstrip("\r") if c.dtype == object or pd.api.types.is_string_dtype(c) else c)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {p} as a table ({str(exc).splitlines()[0][:160]})", "check the separator and encoding") from None


def table_target(path: str, label_col: str = "label", split_col: str = "split", **split) -> TargetData:
    """CSV or Parquet with numeric (or categorical) feature columns and a target column."""
    frame = read_frame(path)
    label_col = _column(frame, label_col, "label", path)
    y, names = encode_labels(frame[label_col].astype(str).to_numpy())
    features = frame.drop(columns=[c for c in (label_col, split_col) if c in frame.columns])
    features = pd.get_dummies(features, dtype=float)  # categorical columns become one-hot
    nan_rows = int(features.isna().any(axis=1).sum())
    if nan_rows:
        col = features.columns[features.isna().any()][0]
        raise UserError(f"{path}: {nan_rows} rows have missing values (first column: '{col}')", "impute or drop those rows first")
    x = torch.as_tensor(features.to_numpy(dtype=np.float32))
    if split_col in frame.columns:
        from transferlab.data.images import given_splits

        s = frame[split_col].astype(str).to_numpy()
        parts = [(x[torch.as_tensor(np.flatnonzero(s == k))], y[s == k]) for k in ("train", "val", "test") if (s == k).any()]
        data = given_splits(parts, names, Path(path).stem)
    else:
        data = split_arrays(x, y, names, name=Path(path).stem, **split)
    data.split_info["features"] = list(map(str, features.columns))
    return data
