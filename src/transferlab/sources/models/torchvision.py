"""``torchvision:NAME``: a torchvision classification model, with local ``weights``."""
from __future__ import annotations

from transferlab.sources import MODEL_SOURCES, ModelSource, sidecar_names


@MODEL_SOURCES.register("torchvision")
def torchvision_model(name: str, weights: str | None = None) -> ModelSource:
    from transferlab.backbones import torchvision as tv
    from transferlab.backbones.constructors import TorchvisionConstructor

    model, pre, cuts, names = tv.create(name, weights)
    make = TorchvisionConstructor(name, tv._num_classes(model.state_dict()) or 1000)
    return ModelSource({"source": f"torchvision:{name}"}, pre, model, cuts, None, names or sidecar_names(weights),
                       constructor=make)
