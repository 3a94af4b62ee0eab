"""``demo:ARCH``: the small digits models transferlab pretrains itself (cached after the first run)."""
from __future__ import annotations

from transferlab.sources import MODEL_SOURCES, ModelSource


@MODEL_SOURCES.register("demo")
def demo_model(arch: str, pretrained: bool = True) -> ModelSource:
    """``pretrained=False``: the architecture alone (rebuilding a saved model needs no pretraining)."""
    from transferlab import zoo

    bb = zoo.pretrained(arch) if pretrained else zoo.build(arch)
    return ModelSource(bb.spec, bb.preprocessing, backbone=bb)
