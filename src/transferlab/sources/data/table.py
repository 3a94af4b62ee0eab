"""``table:FILE``: a CSV or Parquet table of feature columns and a label column."""
from __future__ import annotations

from transferlab.data.base import split_arrays
from transferlab.data.tables import table_target
from transferlab.sources import DATA_SOURCES


def table_data(path: str, model=None, **options):
    return table_target(path, **options)


table_data.options_of = (table_target, split_arrays)
DATA_SOURCES.register("table", table_data)
