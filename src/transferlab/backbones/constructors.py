"""How each source builds its architecture afresh: the scratch control's initialisation.

Each is a small picklable callable returning a new, randomly initialised module of the same
architecture as the pretrained one, drawn from torch's global RNG (which the trial seeds).
``Backbone.set_constructor`` maps its parameters onto the backbone's blocks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class TimmConstructor:
    name: str
    kwargs: dict = field(default_factory=dict)

    def __call__(self) -> nn.Module:
        import timm

        return timm.create_model(self.name, pretrained=False, **self.kwargs)

    def __str__(self) -> str:
        return f"timm.create_model('{self.name}', pretrained=False)"


@dataclass(frozen=True)
class TorchvisionConstructor:
    name: str
    num_classes: int = 1000

    def __call__(self) -> nn.Module:
        import torchvision.models as tvm

        return tvm.get_model(self.name, weights=None, num_classes=self.num_classes)

    def __str__(self) -> str:
        return f"torchvision.models.get_model('{self.name}', weights=None)"


@dataclass(frozen=True)
class ClassConstructor:
    path: str  # "package.module:Class"
    init: dict = field(default_factory=dict)

    def __call__(self) -> nn.Module:
        from transferlab.backbones.torch import import_class

        return import_class(self.path)(**self.init)

    def __str__(self) -> str:
        return f"{self.path}(**init)"


@dataclass(frozen=True)
class HFConstructor:
    config: object  # a transformers PretrainedConfig

    def __call__(self) -> nn.Module:
        from transformers import AutoModel

        return AutoModel.from_config(self.config)

    def __str__(self) -> str:
        return f"AutoModel.from_config({type(self.config).__name__})"
