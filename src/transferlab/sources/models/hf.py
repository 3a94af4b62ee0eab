"""``hf:PATH_OR_ID``: a Hugging Face or sentence-transformers text encoder (offline: a local folder or the hub cache)."""
from __future__ import annotations

from transferlab.sources import MODEL_SOURCES, ModelSource


@MODEL_SOURCES.register("hf")
def hf_model(path_or_id: str, max_length: int = 128) -> ModelSource:
    from transferlab.backbones import hf
    from transferlab.backbones.constructors import HFConstructor

    encoder, pre, pooling = hf.create(path_or_id, max_length)
    spec = {"source": f"hf:{path_or_id}", "pooling": pooling}
    return ModelSource(spec, pre, encoder, builder=lambda ex: hf.to_backbone(encoder, pre, pooling, ex, spec),
                       constructor=HFConstructor(encoder.config))
