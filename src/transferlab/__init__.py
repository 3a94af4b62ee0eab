"""transferlab: should I transfer, and how? Controlled transfer studies against scratch.

Names are imported lazily so that ``transferlab report`` and the analyses run
without importing torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Backbone": "transferlab.backbones.base",
    "Preprocessing": "transferlab.backbones.base",
    "from_sequential": "transferlab.backbones.base",
    "Budget": "transferlab.training",
    "StudyConfig": "transferlab.config",
    "StudyCallback": "transferlab.execution",
    "run_study": "transferlab.execution",
    "MlflowTracker": "transferlab.tracking",
    "TensorBoardTracker": "transferlab.tracking",
    "Source": "transferlab.multisource",
    "run_sources": "transferlab.multisource",
    "StudyResult": "transferlab.results",
    "list_strategies": "transferlab.strategies.base",
    "demo": "transferlab.demo",
    "run_layers": "transferlab.layers",
    "Analysis": "transferlab.analysis",
    "check_strategy": "transferlab.testing",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'transferlab' has no attribute {name!r}")
