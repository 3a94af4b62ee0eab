"""timm models by name, through timm's own loading.

Weights come from the hub when online (``pretrained=True``) or from a local
file through timm's ``pretrained_cfg_overlay=dict(file=...)``, which also
adapts the input channels (grayscale) as timm does.  Blocks are cut at timm's
``feature_info`` stages; mean, std and input size come from the model's
pretrained config.
"""
from __future__ import annotations

from pathlib import Path

import torch

from transferlab.backbones.base import Preprocessing
from transferlab.backbones.torch import load_state_dict
from transferlab.errors import UserError, closest


def _check_name(name: str) -> None:
    import timm

    if not timm.is_model(name):
        raise UserError(f"timm has no model '{name}'{closest(name, timm.list_models())}", "see timm.list_models() for names")


def _from_checkpoint(name: str, state: dict) -> dict:
    """num_classes and in_chans of the network that wrote ``state`` (so its head and stem load as they are)."""
    import timm

    probe = timm.create_model(name, pretrained=False)
    cfg = probe.pretrained_cfg
    out = {}
    cls_key = f"{cfg.get('classifier', 'fc')}.weight"
    if cls_key in state:
        out["num_classes"] = int(state[cls_key].shape[0])
    conv = cfg.get("first_conv")
    if conv and f"{conv}.weight" in state and state[f"{conv}.weight"].dim() == 4:
        out["in_chans"] = int(state[f"{conv}.weight"].shape[1])
    return out


def create(name: str, weights: str | None = None, pretrained: bool = False, in_chans: int | None = None):
    """The timm model, its Preprocessing, its stage cut names and classifier name."""
    import timm

    _check_name(name)
    kwargs: dict = {}
    if weights:
        state = load_state_dict(weights)  # refuses pickles before timm reads the file
        kwargs.update(_from_checkpoint(name, state))
        kwargs["pretrained_cfg_overlay"] = {"file": str(Path(weights).resolve()), "num_classes": kwargs.get("num_classes", 1000)}
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    try:
        model = timm.create_model(name, pretrained=bool(weights) or pretrained, **kwargs)
    except RuntimeError as exc:
        if "size mismatch" in str(exc) or "Missing key" in str(exc) or "Unexpected key" in str(exc):
            first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)[:200]
            raise UserError(f"weights {weights} do not match timm '{name}': {first.strip()}",
                            "pair the weights file with the architecture that produced it") from None
        raise
    except Exception as exc:  # hub download failures (offline) come in several types
        if pretrained and not weights:
            raise UserError(f"could not fetch pretrained weights for timm '{name}' ({type(exc).__name__})",
                            "without network, download them elsewhere and pass --weights FILE") from None
        raise
    data_cfg = timm.data.resolve_model_data_config(model)
    chans = kwargs.get("in_chans", data_cfg["input_size"][0])
    mean, std = tuple(data_cfg["mean"]), tuple(data_cfg["std"])
    if chans != len(mean):  # timm sums the RGB filters for grayscale; use the mean statistics likewise
        mean, std = (sum(mean) / len(mean),) * chans, (sum(std) / len(std),) * chans
    pre = Preprocessing(kind="image", mean=mean, std=std, input_shape=(chans, *data_cfg["input_size"][1:]))
    cuts = [f["module"] for f in model.feature_info] if getattr(model, "feature_info", None) else None
    classifier = model.pretrained_cfg.get("classifier")
    return model, pre, cuts, classifier


def example(pre: Preprocessing, n: int = 2) -> torch.Tensor:
    return torch.zeros(n, *pre.input_shape)
