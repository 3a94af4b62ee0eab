"""Backbones: the one contract every model is adapted to."""
from transferlab.backbones.base import Backbone, Preprocessing, count_trainable, from_sequential, make_head

__all__ = ["Backbone", "Preprocessing", "count_trainable", "from_sequential", "make_head"]
