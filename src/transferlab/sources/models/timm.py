"""``timm:NAME``: any timm model, with local ``weights`` or timm's own ``pretrained`` download."""
from __future__ import annotations

from transferlab.sources import MODEL_SOURCES, ModelSource, sidecar_names


@MODEL_SOURCES.register("timm")
def timm_model(name: str, weights: str | None = None, pretrained: bool = False, in_chans: int | None = None) -> ModelSource:
    from transferlab.backbones import timm as tb
    from transferlab.backbones.constructors import TimmConstructor

    model, pre, cuts, classifier = tb.create(name, weights, pretrained, in_chans)
    spec = {"source": f"timm:{name}", "in_chans": pre.input_shape[0]}
    make = TimmConstructor(name, {"num_classes": model.num_classes, "in_chans": pre.input_shape[0]})
    return ModelSource(spec, pre, model, cuts, classifier, sidecar_names(weights), constructor=make)
