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
        unknown = next((v for v in y if str(v) not in index), None)
        if unknown is not None:
            raise UserError(f"label {str(unknown)!r} is not one of the class names ({', '.join(names[:8])}"
                            f"{', ...' if len(names) > 8 else ''})", "fix the label, or add it to class_names")
        return np.array([index[str(v)] for v in y], dtype=np.int64), names
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


ID_LIKE = 0.5  # a text column with more distinct values than this share of its rows reads as an id or free text


def encode_features(frame: pd.DataFrame, path, categorical: list[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """The feature columns as numbers: text columns one-hot (``col_value``), with each one's categories kept so new
    rows can be encoded alike (``align_columns``).  A text column with nearly one value per row (an id, free text)
    would become as many features as rows: refused unless declared ``categorical``."""
    if frame.shape[1] == 0:
        raise UserError(f"{path} has no feature columns besides its label", "add the input columns, or name the label "
                        "column with --data-opt label_col=...")
    if isinstance(categorical, str):  # --data-opt categorical=[city,zip] arrives as text when its names are unquoted
        categorical = [c.strip().strip("'\"") for c in categorical.strip().strip("[]").split(",") if c.strip()]
    declared = [str(c) for c in (categorical or [])]
    for c in declared:
        if c not in frame.columns:
            raise UserError(f"{path} has no column '{c}' to treat as categorical{closest(c, [str(x) for x in frame.columns])}",
                            "name columns of the table in --data-opt categorical=[...]")
    text = [c for c in frame.columns if c in declared
            or not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    for c in text:
        distinct = frame[c].nunique()
        if c not in declared and len(frame) >= 20 and distinct > ID_LIKE * len(frame):
            raise UserError(f"{path}: column '{c}' has {distinct} distinct values in {len(frame)} rows, like an id or "
                            "free text, and would become as many features", f"drop the column, or declare it with "
                            f"--data-opt categorical=[{c}] (text to classify: use text:{path})")
    categories = {str(c): sorted(map(str, frame[c].dropna().unique())) for c in text}
    encoded = pd.get_dummies(frame.astype({c: str for c in text}), columns=text, dtype=float)
    return encoded, categories


def align_columns(x: torch.Tensor, have: list[str], want: list[str], categories: dict, path) -> torch.Tensor:
    """``x`` (columns ``have``) in the column order a model was trained on (``want``), by name: a one-hot column of a
    category these rows lack is zero; a column the model never saw, or one it needs and these rows lack, is refused."""
    dummies = {f"{c}_{v}" for c, vs in categories.items() for v in vs}
    extra = [h for h in have if h not in want]
    if extra:
        raise UserError(f"{path}: column or category '{extra[0]}' was not in the table the model was trained on",
                        f"give the columns it was trained on ({', '.join(want[:8])}{', ...' if len(want) > 8 else ''})")
    missing = [c for c in want if c not in have and c not in dummies]
    missing += [c for c, vs in categories.items() if vs and not any(f"{c}_{v}" in have for v in vs)]
    if missing:
        raise UserError(f"{path} lacks the column '{missing[0]}' the model was trained on", "add it (columns are matched by name)")
    index = {h: i for i, h in enumerate(have)}
    out = torch.zeros(len(x), len(want), dtype=torch.float32)
    for j, c in enumerate(want):
        if c in index:
            out[:, j] = x[:, index[c]]
    return out


def table_target(path: str, label_col: str = "label", split_col: str = "split", categorical: list[str] | None = None,
                 **split) -> TargetData:
    """CSV or Parquet with numeric (or categorical) feature columns and a target column."""
    frame = read_frame(path)
    label_col = _column(frame, label_col, "label", path)
    y, names = encode_labels(frame[label_col].astype(str).to_numpy())
    features = frame.drop(columns=[c for c in (label_col, split_col) if c in frame.columns])
    nan_rows = int(features.isna().any(axis=1).sum())
    if nan_rows:
        col = features.columns[features.isna().any()][0]
        raise UserError(f"{path}: {nan_rows} rows have missing values (first column: '{col}')", "impute or drop those rows first")
    features, categories = encode_features(features, path, categorical)
    if not np.isfinite(features.to_numpy(dtype=np.float64)).all():
        col = features.columns[~np.isfinite(features.to_numpy(dtype=np.float64)).all(axis=0)][0]
        raise UserError(f"{path}: column '{col}' holds an infinite value", "replace or drop those rows first")
    x = torch.as_tensor(features.to_numpy(dtype=np.float32))
    if split_col in frame.columns:
        from transferlab.data.images import given_splits

        s = frame[split_col].astype(str).to_numpy()
        parts = [(x[torch.as_tensor(np.flatnonzero(s == k))], y[s == k]) for k in ("train", "val", "test") if (s == k).any()]
        data = given_splits(parts, names, Path(path).stem)
    else:
        data = split_arrays(x, y, names, name=Path(path).stem, **split)
    data.split_info["features"] = list(map(str, features.columns))
    data.split_info["categories"] = categories  # a saved model keeps both: predict encodes new rows alike
    return data
