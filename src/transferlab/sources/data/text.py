"""``text:FILE``: sentences and labels in a CSV/TSV file (tokenised by the model's own tokenizer)."""
from __future__ import annotations

from transferlab.data.base import split_arrays
from transferlab.data.text import text_target
from transferlab.sources import DATA_SOURCES


def text_data(path: str, model=None, **options):
    return text_target(path, **options)


text_data.options_of = (text_target, split_arrays)
DATA_SOURCES.register("text", text_data)
