"""Model sources, one file each: ``SCHEME:REST`` -> a ModelSource (registered in MODEL_SOURCES)."""
