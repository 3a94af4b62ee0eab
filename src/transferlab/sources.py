"""Model and data specs, resolved through one table each.

A spec is ``SCHEME:REST``: ``demo:cnn``, ``timm:resnet18``, ``torchvision:resnet18``,
``hf:PATH_OR_ID``, ``torch:package.module:ClassName``; ``demo:digits``,
``images:DIR``, ``table:FILE.csv``, ``text:FILE.tsv``, ``npz:FILE``,
``mnist:DIR``, ``usps:DIR``.  The model is resolved first (its input size
and preprocessing shape how images and texts are read), then the data, then
the Backbone is built and checked on real example rows.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from transferlab.backbones.base import Backbone, Preprocessing
from transferlab.data.base import TargetData, take
from transferlab.errors import UserError, closest


@dataclass
class ModelSource:
    """A model before its Backbone is built: the module, its preprocessing, and how to cut it."""

    spec: dict
    preprocessing: Preprocessing
    module: nn.Module | None = None
    blocks: list[str] | None = None
    head: str | None = None
    class_names: list[str] | None = None
    backbone: Backbone | None = None  # already a Backbone (demo models, API users)
    builder: Callable | None = None  # custom construction (Hugging Face)
    constructor: Callable | None = None  # builds the architecture afresh: scratch's initialisation
    extra: dict = field(default_factory=dict)

    def build(self, example) -> Backbone:
        if self.backbone is not None:
            return self.backbone
        if self.builder is not None:
            bb = self.builder(example)
        else:
            from transferlab.backbones.torch import from_module

            bb = from_module(self.module, example, self.blocks, self.head, self.preprocessing, self.class_names, self.spec)
        if self.constructor is not None:
            bb.set_constructor(self.constructor, self.module, str(self.constructor))
        return bb


def _sidecar_names(weights: str | None) -> list[str] | None:
    """Class names saved next to a weights file (``w.safetensors`` + ``w.json``), for zero-shot accuracy."""
    if not weights:
        return None
    meta = Path(weights).with_suffix(".json")
    if meta.exists():
        import json

        return json.loads(meta.read_text()).get("class_names")
    return None


# ---- models -------------------------------------------------------------------
def _demo_model(name: str, **_) -> ModelSource:
    from transferlab import zoo

    bb = zoo.pretrained(name)
    return ModelSource(bb.spec, bb.preprocessing, backbone=bb)


def _timm_model(name: str, weights: str | None = None, pretrained: bool = False, in_chans: int | None = None,
                **_) -> ModelSource:
    from transferlab.backbones import timm as tb

    from transferlab.backbones.constructors import TimmConstructor

    model, pre, cuts, classifier = tb.create(name, weights, pretrained, in_chans)
    spec = {"source": f"timm:{name}", "in_chans": pre.input_shape[0]}
    make = TimmConstructor(name, {"num_classes": model.num_classes, "in_chans": pre.input_shape[0]})
    return ModelSource(spec, pre, model, cuts, classifier, _sidecar_names(weights), constructor=make)


def _torchvision_model(name: str, weights: str | None = None, **_) -> ModelSource:
    from transferlab.backbones import torchvision as tv

    from transferlab.backbones.constructors import TorchvisionConstructor

    model, pre, cuts, names = tv.create(name, weights)
    make = TorchvisionConstructor(name, tv._num_classes(model.state_dict()) or 1000)
    return ModelSource({"source": f"torchvision:{name}"}, pre, model, cuts, None, names or _sidecar_names(weights),
                       constructor=make)


def _hf_model(path_or_id: str, max_length: int = 128, **_) -> ModelSource:
    from transferlab.backbones import hf

    from transferlab.backbones.constructors import HFConstructor

    encoder, pre, pooling = hf.create(path_or_id, max_length)
    spec = {"source": f"hf:{path_or_id}", "pooling": pooling}
    return ModelSource(spec, pre, encoder, builder=lambda ex: hf.to_backbone(encoder, pre, pooling, ex, spec),
                       constructor=HFConstructor(encoder.config))


def _torch_class(path: str, weights: str | None = None, init: dict | None = None, blocks: list[str] | None = None,
                 head: str | None = None, input_shape: list[int] | None = None, **_) -> ModelSource:
    from transferlab.backbones.torch import import_class, load_state_dict, load_weights

    cls = import_class(path)
    model = cls(**(init or {}))
    if weights:
        load_weights(model, load_state_dict(weights), weights)
    pre = Preprocessing(kind="vector" if not input_shape or len(input_shape) == 1 else "image",
                        input_shape=tuple(input_shape) if input_shape else None)
    from transferlab.backbones.constructors import ClassConstructor

    return ModelSource({"source": f"torch:{path}", "init": init or {}}, pre, model, blocks, head, _sidecar_names(weights),
                       constructor=ClassConstructor(path, dict(init or {})))


MODEL_SOURCES: dict[str, Callable[..., ModelSource]] = {
    "demo": _demo_model, "timm": _timm_model, "torchvision": _torchvision_model, "hf": _hf_model, "torch": _torch_class,
}


# ---- data ----------------------------------------------------------------------
def _image_size(pre: Preprocessing) -> tuple[tuple[int, int], int]:
    shape = pre.input_shape or (3, 224, 224)
    return (shape[-2], shape[-1]), shape[0] if len(shape) == 3 else 1


def _demo_data(name: str, model: ModelSource | None = None, **_) -> TargetData:
    from transferlab.data.builtin import digits_target

    if name not in ("digits", "digits-5-9", "digits-b"):
        raise UserError(f"unknown demo data '{name}'",
                        "use demo:digits (digits 5-9) or demo:digits-b (the half no demo source has seen)")
    return digits_target(half="B" if name == "digits-b" else None)


def _npz_data(path: str, model=None, **options) -> TargetData:
    from transferlab.data.tables import arrays_target

    return arrays_target(path, **options)


def _table_data(path: str, model=None, **options) -> TargetData:
    from transferlab.data.tables import table_target

    return table_target(path, **options)


def _text_data(path: str, model=None, **options) -> TargetData:
    from transferlab.data.text import text_target

    return text_target(path, **options)


def _image_data(path: str, model: ModelSource | None = None, **options) -> TargetData:
    from transferlab.data.images import image_target

    size, channels = _image_size(model.preprocessing if model else Preprocessing())
    return image_target(path, size=tuple(options.pop("size", size)), channels=options.pop("channels", channels), **options)


def _digit_set(kind: str):
    def load(path: str, model: ModelSource | None = None, **options) -> TargetData:
        from transferlab.data import digitsets

        size, channels = _image_size(model.preprocessing if model else Preprocessing(input_shape=(1, 28, 28)))
        return digitsets.target(kind, path, size=tuple(options.pop("size", size)), channels=channels, **options)

    return load


DATA_SOURCES: dict[str, Callable[..., TargetData]] = {
    "demo": _demo_data, "npz": _npz_data, "table": _table_data, "text": _text_data, "images": _image_data,
    "mnist": _digit_set("mnist"), "usps": _digit_set("usps"),
}


def _split(spec: str, table: dict, kind: str) -> tuple[Callable, str]:
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in table:
        raise UserError(f"cannot read {kind} spec '{spec}'{closest(scheme, table)}",
                        f"write it as SCHEME:NAME with SCHEME one of: {', '.join(sorted(table))}")
    return table[scheme], rest


def load_model(spec: str, **options) -> ModelSource:
    loader, rest = _split(spec, MODEL_SOURCES, "model")
    return loader(rest, **options)


def load_data(spec: str, model: ModelSource | None = None, **options) -> TargetData:
    loader, rest = _split(spec, DATA_SOURCES, "data")
    try:
        return loader(rest, model=model, **options)
    except TypeError as exc:
        raise UserError(f"bad option for data '{spec}': {exc}", "see the README's section on data formats") from None


def resolve(model_spec: str, data_spec: str, model_options: dict | None = None,
            data_options: dict | None = None) -> tuple[Backbone, TargetData]:
    """Model spec + data spec -> a checked Backbone and its target data."""
    source = load_model(model_spec, **(model_options or {}))
    data = load_data(data_spec, model=source, **(data_options or {}))
    example = source.preprocessing.apply(take(data.train.inputs, torch.arange(min(2, len(data.train)))))
    backbone = source.build(example)
    return backbone, data
