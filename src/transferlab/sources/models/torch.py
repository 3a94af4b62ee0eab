"""``torch:package.module:ClassName``: any nn.Module class, built with ``init`` and loaded from ``weights``."""
from __future__ import annotations

from transferlab.backbones.base import Preprocessing
from transferlab.sources import MODEL_SOURCES, ModelSource, sidecar_names


@MODEL_SOURCES.register("torch")
def torch_class(path: str, weights: str | None = None, init: dict | None = None, blocks: list[str] | None = None,
                head: str | None = None, input_shape: list[int] | None = None) -> ModelSource:
    """``input_shape``: what one example looks like to the model, e.g. [1, 28, 28]; without it the data keeps its own."""
    from transferlab.backbones.constructors import ClassConstructor
    from transferlab.backbones.torch import import_class, load_state_dict, load_weights

    cls = import_class(path)
    model = cls(**(init or {}))
    if weights:
        load_weights(model, load_state_dict(weights), weights)
    pre = Preprocessing(kind="vector" if not input_shape or len(input_shape) == 1 else "image",
                        input_shape=tuple(input_shape) if input_shape else None)
    return ModelSource({"source": f"torch:{path}", "init": init or {}}, pre, model, blocks, head, sidecar_names(weights),
                       constructor=ClassConstructor(path, dict(init or {})))
