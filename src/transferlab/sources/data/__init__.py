"""Data sources, one file each: ``SCHEME:REST`` -> TargetData (registered in DATA_SOURCES)."""
