"""``images:DIR``: one subfolder per class (or train/ val/ test/ folders of them), or a CSV of path,label."""
from __future__ import annotations

from transferlab.backbones.base import Preprocessing
from transferlab.data.base import split_arrays
from transferlab.data.images import image_target
from transferlab.sources import DATA_SOURCES, image_size


def image_data(path: str, model=None, size: list[int] | None = None, channels: int | None = None, **options):
    """Read at the model's input size and channels unless ``size``/``channels`` say otherwise."""
    (h, w), c = image_size(model.preprocessing if model else Preprocessing())
    return image_target(path, size=tuple(size or (h, w)), channels=channels or c, **options)


image_data.options_of = (image_target, split_arrays)
DATA_SOURCES.register("images", image_data)
