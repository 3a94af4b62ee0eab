"""For each BatchNorm of the body, its running statistics against the statistics of its inputs on target data
(frozen BN layers keep the source's values). A hooked pass of its own: the statistics live inside the blocks."""
from __future__ import annotations

import torch

from transferlab.backbones.base import _NORM_TYPES, Backbone
from transferlab.data.base import TargetData, take
from transferlab.measurements import Measurement, Preflight, register

BN_SHIFT_TOL, BN_VAR_RANGE = 1.0, (0.25, 4.0)


@torch.no_grad()
def bn_check(backbone: Backbone, data: TargetData, rows: int = 512) -> list[dict]:
    stats: list[dict] = []
    hooks = []

    def watch(name, bn):
        def hook(module, args):
            x = args[0]
            dims = [0] + list(range(2, x.dim()))
            mu, var = x.mean(dims), x.var(dims)
            shift = ((mu - bn.running_mean).abs() / (bn.running_var + bn.eps).sqrt()).mean().item()
            ratio = (var / (bn.running_var + bn.eps)).mean().item()
            stats.append({"layer": name, "shift": shift, "var_ratio": ratio,
                          "flag": shift > BN_SHIFT_TOL or not BN_VAR_RANGE[0] <= ratio <= BN_VAR_RANGE[1]})
        return hook

    for name, module in backbone.blocks.named_modules():
        if isinstance(module, _NORM_TYPES) and module.track_running_stats and module.running_mean is not None:
            hooks.append(module.register_forward_pre_hook(watch(name, module)))
    try:
        if hooks:
            backbone.eval()
            state = take(data.train.inputs, torch.arange(min(rows, len(data.train))))
            for block in backbone.blocks.values():
                state = block(state)
    finally:
        for h in hooks:
            h.remove()
    return stats


@register
class BatchNormCheck(Measurement):
    name = "batchnorm"

    def measure(self, pf: Preflight) -> list[dict]:
        return bn_check(pf.backbone, pf.data)
