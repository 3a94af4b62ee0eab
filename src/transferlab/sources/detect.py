"""A bare path as a data spec (``photos/``, ``reviews.csv``): which data source reads it, decided from the content.

A folder of class subfolders of images is ``images:``; MNIST's idx files and USPS's files are ``mnist:`` and
``usps:``; ``.npz`` is ``npz:``; ``.jsonl`` is ``text:``. A table file (``.csv``, ``.tsv``, ``.txt``,
``.parquet``) is read on its first rows: a column of image paths makes it ``images:``, one free-text column
``text:``, feature columns only ``table:``. What cannot be told apart is refused, naming the SCHEME:PATH forms.
"""
from __future__ import annotations

import os
from pathlib import Path

from transferlab.data.images import EXTENSIONS
from transferlab.errors import UserError

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet")
SNIFF_ROWS = 200
TEXT_WORDS = 3.0  # a column whose values average more words than this is free text, not a category


def _has_images(root: Path, depth: int = 3) -> bool:
    """An image file within ``depth`` folder levels (class/ or train/class/), found without listing everything."""
    base = len(root.parts)
    for folder, dirs, files in os.walk(root):
        if len(Path(folder).parts) - base >= depth:
            dirs[:] = []
        if len(Path(folder).parts) > base and any(Path(f).suffix.lower() in EXTENSIONS for f in files):
            return True
    return False


def _folder_scheme(p: Path) -> str:
    names = {f.name for f in p.iterdir()}
    if any(n.startswith("train-images-idx3-ubyte") for n in names):
        return "mnist"
    if any(n.startswith(("zip.train", "zip.test")) for n in names):
        return "usps"
    if _has_images(p):
        return "images"
    raise UserError(f"{p} is a folder without images in class subfolders",
                    "put one subfolder of images per class in it, or name the format as SCHEME:PATH (e.g. images:DIR)")


def _table_scheme(p: Path) -> str:
    import pandas as pd

    from transferlab.data.tables import read_frame

    frame = read_frame(str(p)).head(SNIFF_ROWS)
    strings = [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    paths = [c for c in strings if frame[c].astype(str).str.lower().str.endswith(tuple(EXTENSIONS)).mean() > 0.9]
    if paths:
        return "images"
    words = {c: frame[c].dropna().astype(str).str.split().str.len().mean() for c in strings}
    texts = [c for c, w in words.items() if pd.notna(w) and w > TEXT_WORDS]
    others = [c for c in frame.columns if c not in texts]
    if not texts:
        return "table"
    if len(texts) == 1 and len(others) <= 2:  # the text, its label, perhaps an id or a split column
        return "text"
    raise UserError(f"cannot tell whether {p} is text or a table: free-text columns {', '.join(map(str, texts))} "
                    f"beside {len(others)} other columns", f"name it: text:{p} (with text_col=...) or table:{p}")


def data_scheme(path: str) -> str:
    """The data source that reads ``path`` (an existing file or folder)."""
    p = Path(path)
    if p.is_dir():
        return _folder_scheme(p)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix == ".jsonl":
        return "text"
    if suffix in TABLE_SUFFIXES:
        return _table_scheme(p)
    raise UserError(f"cannot tell how to read {path} (a '{suffix}' file)",
                    "name the format as SCHEME:PATH, e.g. images:DIR, table:FILE.csv, text:FILE.tsv, npz:FILE.npz")
