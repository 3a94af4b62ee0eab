"""``mnist:DIR`` (idx files) and ``usps:DIR`` (ESL text files): the digit sets, with their official splits."""
from __future__ import annotations

from transferlab.backbones.base import Preprocessing
from transferlab.data import digitsets
from transferlab.sources import DATA_SOURCES, image_size

NATIVE = (1, 28, 28)  # without a shape from the model, both sets are read as MNIST's 28x28 grey digits


def _digit_set(kind: str):
    def load(path: str, model=None, size: list[int] | None = None, channels: int | None = None, frame: str = "stretch",
             **options):
        """``frame``: "stretch" fills the frame with the digit (USPS's own framing); "mnist" fits it into a
        20x20 box centred in 28x28, as MNIST's digits are, before resizing (what an MNIST-trained model saw)."""
        (h, w), c = image_size(model.preprocessing if model else Preprocessing(), NATIVE)
        return digitsets.target(kind, path, size=tuple(size or (h, w)), channels=channels or c, frame=frame, **options)

    load.options_of = (digitsets.target,)
    return load


DATA_SOURCES.register("mnist", _digit_set("mnist"))
DATA_SOURCES.register("usps", _digit_set("usps"))
