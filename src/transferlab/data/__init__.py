"""Target datasets and their splits."""
from transferlab.data.base import SealedSplit, Split, TargetData, split_arrays

__all__ = ["SealedSplit", "Split", "TargetData", "split_arrays"]
