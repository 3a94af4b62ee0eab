"""Reuse strategies: one file each, registered by name (see base.py)."""
from transferlab.strategies.base import Fitted, Strategy, TrialContext, from_spec, list_strategies, register, registry

__all__ = ["Fitted", "Strategy", "TrialContext", "from_spec", "list_strategies", "register", "registry"]
