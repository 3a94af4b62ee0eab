"""'Why does my pretrained model learn slower?' ``GradientProbe``: per block, gradient norm and update-to-weight
ratio in the first evaluation periods of a trial, so a strategy can be compared with scratch where they differ.
(The input-scale and BatchNorm checks are preflight measurements: measurements/inputs.py, batchnorm.py.)
"""
from __future__ import annotations

import torch
from torch import nn

from transferlab.backbones.base import Backbone, Standardize
from transferlab.fitloop import Hook


class GradientProbe(Hook):
    """Per block: mean gradient norm per step and ||W_end - W_start|| / ||W_start|| for the first periods."""

    def __init__(self, bb: Backbone, epochs: int = 2):  # epochs: evaluation periods watched
        self.groups = [(name, list(block.parameters())) for name, block in bb.blocks.items()]
        self.groups.append(("head", list(bb.head.parameters())))
        self.epochs, self.epoch, self.rows = epochs, 0, []
        self.head = bb.head
        self.feat_sq, self.feat_n = 0.0, 0

    batchable = True  # reads only its own member's parameters; a cohort measures the head's input for it

    def _watch_head(self, module, args) -> None:
        # The head's input scale: with Adam the weight update is about lr whatever the gradient, so tiny features
        # mean tiny changes of the logits, the slow start a frozen body can cause.
        if module.training:
            self.on_input_square(args[0].detach().float().pow(2).mean())

    def watched_input(self):
        return self.watched if getattr(self, "hook", None) is not None else None

    def on_input_square(self, value: torch.Tensor) -> None:
        if self.epoch <= self.epochs:
            self.feat_sq += value  # a tensor: no host sync per step
            self.feat_n += 1

    def _flat(self, params: list[nn.Parameter]) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in params]) if params else torch.zeros(1)

    def on_period_start(self, epoch: int, model) -> None:
        self.epoch = epoch
        if epoch == 1:
            # The first layer that learns: a head on frozen features starts with their fixed standardisation.
            first = next((m for m in self.head if not isinstance(m, Standardize)), self.head) \
                if isinstance(self.head, nn.Sequential) else self.head
            self.watched, self.hook = first, first.register_forward_pre_hook(self._watch_head)
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

    def on_period_end(self, log) -> None:
        if self.epoch <= self.epochs:
            for name, ps in self.groups:
                w0, w1 = self.start[name], self._flat(ps)
                ratio = float((w1.cpu() - w0.cpu()).norm() / w0.norm().clamp(min=1e-12).cpu())
                row = {"period": self.epoch, "block": name, "grad_norm": float(self.grad[name]) / max(1, self.steps),
                       "update_ratio": ratio}
                if name == "head":
                    row["input_rms"] = float(self.feat_sq / max(1, self.feat_n)) ** 0.5
                self.rows.append(row)
            if self.epoch == self.epochs and getattr(self, "hook", None) is not None:
                self.hook.remove()
                self.hook = None
