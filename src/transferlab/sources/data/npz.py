"""``npz:FILE``: arrays ``X`` (features or images) and ``y`` (labels) in a NumPy .npz file."""
from __future__ import annotations

from transferlab.data.base import split_arrays
from transferlab.data.tables import arrays_target
from transferlab.sources import DATA_SOURCES


def npz_data(path: str, model=None, **options):
    return arrays_target(path, **options)


npz_data.options_of = (arrays_target, split_arrays)
DATA_SOURCES.register("npz", npz_data)
