"""Model and data specs, resolved through one registry each (a source is one file in models/ or data/).

A spec is ``SCHEME:REST``: ``demo:cnn``, ``timm:resnet18``, ``torchvision:resnet18``,
``hf:PATH_OR_ID``, ``torch:package.module:ClassName``; ``demo:digits``,
``images:DIR``, ``table:FILE.csv``, ``text:FILE.tsv``, ``npz:FILE``,
``mnist:DIR``, ``usps:DIR``, ``hf-datasets:DIR``, or a bare path whose format is read from its content
(``sources/detect.py``).  The model is resolved first (its input size
and preprocessing shape how images and texts are read), then the data, then
the Backbone is built and checked on real example rows.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from transferlab.accel import move
from transferlab.backbones.base import Backbone, Preprocessing
from transferlab.data.base import TargetData, n_rows, take
from transferlab.errors import UserError, closest
from transferlab.registry import Registry, accepted_options, check_options


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


def sidecar_names(weights: str | None) -> list[str] | None:
    """Class names saved next to a weights file (``w.safetensors`` + ``w.json``), for zero-shot accuracy."""
    if not weights:
        return None
    meta = Path(weights).with_suffix(".json")
    if meta.exists():
        import json

        return json.loads(meta.read_text()).get("class_names")
    return None


# ---- the registries: one file per source under sources/models/ and sources/data/ ----------------------------
MODEL_SOURCES = Registry("model source", "transferlab.sources.models", "transferlab.models")
DATA_SOURCES = Registry("data source", "transferlab.sources.data", "transferlab.data_sources")
HIDDEN = ("model",)  # what the pipeline passes a data loader itself, never a user option


def image_size(pre: Preprocessing, native: tuple[int, ...] = (3, 224, 224)) -> tuple[tuple[int, int], int]:
    """(H, W) and channels the model takes; the data's own ``native`` shape when the model does not say."""
    shape = pre.input_shape if pre.input_shape and len(pre.input_shape) == 3 else native
    return (shape[-2], shape[-1]), shape[0]


def _split_spec(spec: str, registry: Registry) -> tuple[str, str]:
    scheme, sep, rest = spec.partition(":")
    if registry is DATA_SOURCES and not (sep and scheme in registry.entries()) and Path(spec).exists():
        from transferlab.sources.detect import data_scheme

        return data_scheme(spec), spec  # a bare path: the format is read from what is there
    if registry is DATA_SOURCES and not sep:
        raise UserError(f"data path {spec} does not exist", "check the path, or write the data as SCHEME:PATH with "
                        f"SCHEME one of: {', '.join(registry.names())}")
    if not sep or scheme not in registry.entries():
        raise UserError(f"cannot read {registry.kind.split()[0]} spec '{spec}'{closest(scheme, registry.entries())}",
                        f"write it as SCHEME:NAME with SCHEME one of: {', '.join(registry.names())}")
    return scheme, rest


def _call(spec: str, registry: Registry, options: dict, **given):
    """Call the source's loader after refusing any option it does not take (a misspelling is never ignored)."""
    scheme, rest = _split_spec(spec, registry)
    loader = registry.get(scheme)
    what = registry.kind.split()[0]
    first = next(iter(inspect.signature(loader).parameters))
    check_options(f"{what} '{scheme}:'", options, accepted_options(loader), (first, *HIDDEN))
    try:
        return loader(rest, **given, **options)
    except TypeError as exc:  # an option of the right name but the wrong kind of value, deeper down
        raise UserError(f"bad option for {what} '{spec}': {exc}", "see the README's section on data formats and models") from None


def load_model(spec: str, **options) -> ModelSource:
    return _call(spec, MODEL_SOURCES, options)


def load_data(spec: str, model: ModelSource | None = None, **options) -> TargetData:
    return _call(spec, DATA_SOURCES, options, model=model)


def build_checked(source: ModelSource, data: TargetData, spec: str = "the model") -> Backbone:
    """Build the Backbone on two real rows of the data: a model and data that disagree in shape give one line."""
    example = take(data.train.inputs, torch.arange(min(2, len(data.train))))
    try:  # the model's preprocessing (an ImageNet normalisation of 3 channels) is the first thing that may not fit
        example = source.preprocessing.apply(example)
        return source.build(example)
    except UserError:
        raise
    except Exception as exc:  # the user's module on the user's data: any error means they do not fit
        raise misfit(spec, example, exc) from exc


def check_fits(backbone: Backbone, inputs, spec: str = "the model") -> None:
    """The door every command passes before it touches the data: two of the user's rows, preprocessed as the
    model asks, through the whole network (built here, prebuilt, given to the API, or loaded for ``predict``).
    A model and data that disagree give one line here, not a traceback from a measurement or a step."""
    example = take(inputs, torch.arange(min(2, n_rows(inputs))))
    weight = next(backbone.parameters(), None)
    modes = [(m, m.training) for m in backbone.modules()]  # frozen blocks stay in eval: put back each module's own
    try:
        example = backbone.preprocessing.apply(example)
        backbone.eval()
        with torch.no_grad():
            backbone(move(example, weight.device) if weight is not None else example)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's network on the user's rows: any error means they do not fit
        raise misfit(spec, example, exc) from exc
    finally:
        for m, mode in modes:
            m.training = mode


def misfit(spec: str, example, exc: Exception) -> UserError:
    """The one line for a model and data that do not fit: what failed on which shape, and how to make them fit."""
    shape = tuple(example.shape) if torch.is_tensor(example) else "token ids"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(
        f"{spec} fails on the data's inputs of shape {shape} ({type(exc).__name__}: {first[:200]})",
        "give the shape the model takes with --model-opt input_shape=[C,H,W] (torch: models), or resize the data "
        "with --data-opt size=[H,W] and channels=C (a table: the model's number of feature columns)")


def resolve(model_spec: str, data_spec: str, model_options: dict | None = None,
            data_options: dict | None = None) -> tuple[Backbone, TargetData]:
    """Model spec + data spec -> a checked Backbone and its target data."""
    source = load_model(model_spec, **(model_options or {}))
    data = load_data(data_spec, model=source, **(data_options or {}))
    backbone = build_checked(source, data, f"model '{model_spec}'")
    check_fits(backbone, data.train.inputs, f"model '{model_spec}'")  # a prebuilt one (demo:, a zoo entry) too
    return backbone, data
