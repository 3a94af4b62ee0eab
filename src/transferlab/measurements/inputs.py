"""Are the target inputs scaled as the pretrained layers expect? Per-channel mean and std of the preprocessed
train inputs; about 0 and 1 when the preprocessing matches the model's pretraining."""
from __future__ import annotations

import torch

from transferlab.backbones.base import Backbone
from transferlab.data.base import TargetData
from transferlab.data.imagestore import Images
from transferlab.measurements import Measurement, Preflight, register

MEAN_TOL, STD_RANGE = 0.5, (0.5, 2.0)


def input_check(backbone: Backbone, data: TargetData, rows: int = 1024) -> dict | None:
    x = data.train.inputs
    if isinstance(x, Images):  # images held as bytes: the first rows as the model reads them
        x = x[:rows]
    if not torch.is_tensor(x) or not x.is_floating_point() or backbone.preprocessing.mean is None:
        return None
    x = x[:rows]
    dims = [0] + list(range(2, x.dim()))
    mean, std = x.mean(dims), x.std(dims)
    off = bool((mean.abs() > MEAN_TOL).any() or (std < STD_RANGE[0]).any() or (std > STD_RANGE[1]).any())
    return {"mean": mean.tolist(), "std": std.tolist(), "flag": off,
            "message": "inputs are far from the pretraining statistics (expected mean 0, std 1 per channel): check the "
                       "preprocessing, image scale (0-1 vs 0-255) and channel order" if off else None}


@register
class InputCheck(Measurement):
    name = "inputs"

    def measure(self, pf: Preflight) -> dict | None:
        return input_check(pf.backbone, pf.data)
