"""torchvision classification models by name, with their weights enums or a local state dict."""
from __future__ import annotations

from transferlab.backbones.base import Preprocessing
from transferlab.backbones.torch import load_state_dict, load_weights
from transferlab.errors import UserError, closest

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _cuts(model) -> list[str] | None:
    names = {n for n, _ in model.named_children()}
    if {"layer1", "layer2", "layer3", "layer4"} <= names:  # ResNet family
        return ["maxpool", "layer1", "layer2", "layer3", "layer4"]
    return None  # Sequential 'features' etc: one block per weighted layer group


def _num_classes(state: dict) -> int | None:
    weights = [k for k, v in state.items() if k.endswith(".weight") and v.dim() == 2]
    return int(state[weights[-1]].shape[0]) if weights else None


def create(name: str, weights: str | None = None):
    """``weights``: a weights enum name (DEFAULT, IMAGENET1K_V1: downloaded when online) or a file."""
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        raise UserError(f"torchvision has no classification model '{name}'{closest(name, tvm.list_models(module=tvm))}",
                        "see torchvision.models.list_models()")
    enum = tvm.get_model_weights(name)
    class_names = None
    if weights and (weights in enum.__members__ or weights == "DEFAULT"):
        chosen = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
        try:
            model = tvm.get_model(name, weights=chosen)
        except Exception as exc:  # download failure offline
            raise UserError(f"could not fetch torchvision weights {name}.{weights} ({type(exc).__name__})",
                            "without network, save a state dict elsewhere and pass --weights FILE") from None
        class_names = chosen.meta.get("categories")
    elif weights:
        state = load_state_dict(weights)
        model = tvm.get_model(name, weights=None, num_classes=_num_classes(state) or 1000)
        load_weights(model, state, weights)
    else:
        model = tvm.get_model(name, weights=None)
    tf = enum.DEFAULT.transforms()
    mean, std = tuple(getattr(tf, "mean", IMAGENET[0])), tuple(getattr(tf, "std", IMAGENET[1]))
    size = getattr(tf, "crop_size", [224])[0]
    pre = Preprocessing(kind="image", mean=mean, std=std, input_shape=(3, size, size))
    return model, pre, _cuts(model), class_names
