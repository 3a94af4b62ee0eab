"""Text data: CSV, TSV or JSONL with a text column and a label column.

Texts are kept as strings here; the model's tokenizer turns them into ids once,
when the study prepares the data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from transferlab.data.base import TargetData, split_arrays
from transferlab.data.tables import _column, encode_labels, read_frame
from transferlab.errors import UserError


def text_target(path: str, text_col: str = "text", label_col: str = "label", header: bool = True,
                columns: str | None = None, sep: str | None = None, **split) -> TargetData:
    """``columns="text,label"`` names the columns of a file without a header row."""
    names = [c.strip() for c in columns.split(",")] if columns else None
    frame = read_frame(path, sep=sep, header=header and names is None, columns=names)
    text_col = _column(frame, text_col, "text", path)
    label_col = _column(frame, label_col, "label", path)
    frame = frame.dropna(subset=[text_col, label_col])
    texts = frame[text_col]
    if texts.map(lambda t: isinstance(t, str)).mean() < 0.9:
        raise UserError(f"column '{text_col}' of {path} does not hold text (it looks like {texts.dtype} values)",
                        "point text_col at the column with the sentences")
    y, classes = encode_labels(frame[label_col].astype(str).to_numpy())
    return split_arrays(np.asarray(texts.astype(str).to_numpy(), dtype=object), y, classes, name=Path(path).stem, **split)
