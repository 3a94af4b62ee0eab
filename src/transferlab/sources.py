"""Model and data specs ("demo:cnn", "demo:digits") resolved through one table each.

A spec is ``SCHEME:REST``; the scheme picks a loader.  New model sources and
data formats add an entry here.
"""
from __future__ import annotations

from collections.abc import Callable

from transferlab.backbones.base import Backbone
from transferlab.data.base import TargetData
from transferlab.errors import UserError, closest


def _demo_model(name: str, **_) -> Backbone:
    from transferlab import zoo

    return zoo.pretrained(name)


def _demo_data(name: str, **_) -> TargetData:
    from transferlab.data.builtin import digits_target

    if name not in ("digits", "digits-5-9"):
        raise UserError(f"unknown demo data '{name}'", "use demo:digits (digits 5-9, the demo's target)")
    return digits_target()


def _npz_data(path: str, **options) -> TargetData:
    """``npz:FILE`` with arrays ``X`` (inputs) and ``y`` (labels), optionally ``class_names``."""
    from transferlab.data.tables import arrays_target

    return arrays_target(path, **options)


MODEL_SOURCES: dict[str, Callable[..., Backbone]] = {"demo": _demo_model}
DATA_SOURCES: dict[str, Callable[..., TargetData]] = {"demo": _demo_data, "npz": _npz_data}


def _split(spec: str, table: dict, kind: str) -> tuple[Callable, str]:
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in table:
        raise UserError(f"cannot read {kind} spec '{spec}'{closest(scheme, table)}",
                        f"write it as SCHEME:NAME with SCHEME one of: {', '.join(sorted(table))}")
    return table[scheme], rest


def load_model(spec: str, **options) -> Backbone:
    loader, rest = _split(spec, MODEL_SOURCES, "model")
    return loader(rest, **options)


def load_data(spec: str, **options) -> TargetData:
    loader, rest = _split(spec, DATA_SOURCES, "data")
    return loader(rest, **options)
