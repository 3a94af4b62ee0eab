"""Preflight measurements: what a study measures before any training, one file each.

A measurement declares the cuts whose activations it reads; the preflight asks the
study's one feature cache for the union of those cuts, so the train and validation
splits each pass through the pretrained body once, and every measurement (and later
every frozen trial) reads the same activations. Its result is stored in ``study.json``
under its name. Plugins register more through the ``transferlab.measurements`` entry points.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from transferlab.registry import Registry

MEASUREMENTS = Registry("measurement", "transferlab.measurements", "transferlab.measurements")


@dataclass
class Preflight:
    """What a measurement may read: the pretrained backbone, the prepared data and the shared activations.

    The test split is sealed here as everywhere: a measurement that needs it must ``open`` it (and is logged).
    """

    backbone: Any  # Backbone
    data: Any  # TargetData, preprocessed
    config: Any  # StudyConfig
    cache: Any  # FeatureCache: the study's, so the trials reuse this pass
    key: str  # the cache key of (weights, preprocessing, data)
    device: str = "cpu"

    def states(self, split_key: str, k: int):
        """The ``split_key`` split ("train", "val" or "source") as activations at cut ``k``."""
        split = {"train": self.data.train, "val": self.data.val, "source": self.data.source}[split_key]
        return self.cache.states(self.backbone, self.key, split_key, split, k)


class Measurement:
    """Base class: ``name`` is its key in study.json; ``cuts`` the activations it reads."""

    name: ClassVar[str] = ""
    profile: ClassVar[bool] = False  # part of the per-layer profile: skipped with ``profile = false``

    def cuts(self, backbone) -> Iterable[int]:
        return ()

    def measure(self, pf: Preflight) -> Any:
        raise NotImplementedError


def register(cls: type[Measurement]) -> type[Measurement]:
    return MEASUREMENTS.register(cls.name, cls)


def _chosen(config, only: Iterable[str] | None = None) -> list[Measurement]:
    return [cls() for name, cls in sorted(MEASUREMENTS.entries().items())
            if (only is None or name in only) and (config.profile or not cls.profile)]


def wanted_cuts(config, backbone) -> set[int]:
    """The cuts the measurements the config asks for read for whole splits."""
    return {int(k) for m in _chosen(config) for k in m.cuts(backbone)}


def run_measurements(pf: Preflight, only: Iterable[str] | None = None) -> dict[str, Any]:
    """Every registered measurement the config asks for, sharing one pass per split at the union of their cuts."""
    chosen = _chosen(pf.config, only)
    for m in chosen:
        pf.cache.want(m.cuts(pf.backbone))
    return {m.name: m.measure(pf) for m in chosen}
