"""'Why does my pretrained model learn slower?' Measurements that explain a slow or stuck start.

- ``input_check``: per-channel mean and std of the preprocessed target inputs; the pretrained
  layers expect about 0 and 1 when the preprocessing matches their pretraining.
- ``bn_check``: for each BatchNorm of the body, its running statistics against the statistics
  of its inputs on target data; frozen BN layers keep the source's values.
- ``GradientProbe``: per block, gradient norm and update-to-weight ratio in the first epochs of a
  trial, so a strategy can be compared with scratch where they differ.
"""
from __future__ import annotations

import torch
from torch import nn

from transferlab.backbones.base import _NORM_TYPES, Backbone
from transferlab.data.base import TargetData, take
from transferlab.training import Hook

MEAN_TOL, STD_RANGE = 0.5, (0.5, 2.0)
BN_SHIFT_TOL, BN_VAR_RANGE = 1.0, (0.25, 4.0)


def input_check(backbone: Backbone, data: TargetData, rows: int = 1024) -> dict | None:
    x = data.train.inputs
    if not torch.is_tensor(x) or not x.is_floating_point() or backbone.preprocessing.mean is None:
        return None
    x = x[:rows]
    dims = [0] + list(range(2, x.dim()))
    mean, std = x.mean(dims), x.std(dims)
    off = bool((mean.abs() > MEAN_TOL).any() or (std < STD_RANGE[0]).any() or (std > STD_RANGE[1]).any())
    return {"mean": mean.tolist(), "std": std.tolist(), "flag": off,
            "message": "inputs are far from the pretraining statistics (expected mean 0, std 1 per channel): check the "
                       "preprocessing, image scale (0-1 vs 0-255) and channel order" if off else None}


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


class GradientProbe(Hook):
    """Per block: mean gradient norm per step and ||W_end - W_start|| / ||W_start|| for the first epochs."""

    def __init__(self, bb: Backbone, epochs: int = 2):
        self.groups = [(name, list(block.parameters())) for name, block in bb.blocks.items()]
        self.groups.append(("head", list(bb.head.parameters())))
        self.epochs, self.epoch, self.rows = epochs, 0, []
        self.head = bb.head
        self.feat_sq, self.feat_n = 0.0, 0

    def _watch_head(self, module, args) -> None:
        # The head's input scale: with Adam the weight update is about lr whatever the gradient, so tiny features
        # mean tiny changes of the logits, the slow start a frozen body can cause.
        if module.training and self.epoch <= self.epochs:
            self.feat_sq += args[0].detach().float().pow(2).mean()  # a tensor: no host sync per step
            self.feat_n += 1

    def _flat(self, params: list[nn.Parameter]) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in params]) if params else torch.zeros(1)

    def on_epoch_start(self, epoch: int, model) -> None:
        self.epoch = epoch
        if epoch == 1:
            self.hook = self.head.register_forward_pre_hook(self._watch_head)
        if epoch <= self.epochs:
            self.feat_sq, self.feat_n = 0.0, 0
            self.start = {name: self._flat(ps).clone() for name, ps in self.groups}
            self.grad = {name: 0.0 for name, _ in self.groups}
            self.steps = 0

    def on_after_backward(self, model) -> None:
        if self.epoch <= self.epochs:
            self.steps += 1
            for name, ps in self.groups:
                grads = [p.grad for p in ps if p.grad is not None]
                if grads:  # one fused norm per group: this runs every step of the first epochs
                    self.grad[name] += torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

    def on_epoch_end(self, log) -> None:
        if self.epoch <= self.epochs:
            for name, ps in self.groups:
                w0, w1 = self.start[name], self._flat(ps)
                ratio = float((w1.cpu() - w0.cpu()).norm() / w0.norm().clamp(min=1e-12).cpu())
                row = {"epoch": self.epoch, "block": name, "grad_norm": float(self.grad[name]) / max(1, self.steps),
                       "update_ratio": ratio}
                if name == "head":
                    row["input_rms"] = float(self.feat_sq / max(1, self.feat_n)) ** 0.5
                self.rows.append(row)
            if self.epoch == self.epochs and getattr(self, "hook", None) is not None:
                self.hook.remove()
                self.hook = None
