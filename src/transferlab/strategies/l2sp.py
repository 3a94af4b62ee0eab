"""L2-SP (Li, Grandvalet and Davoine, ICML 2018): fine-tuning with a penalty toward the pretrained weights.

The loss gains ``alpha / 2 * ||w - w0||^2`` over the pretrained body's parameters (the new head keeps the
optimizer's ordinary weight decay), added through ``fit``'s ``penalty`` hook. Everything else is ``finetune``'s:
with ``alpha=0`` it trains exactly as ``finetune`` with the same ``body_lr_mult`` and ``layer_decay`` (a test
checks they are bit-identical).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from transferlab.errors import UserError
from transferlab.strategies.base import Fitted, TrialContext, register
from transferlab.strategies.finetune import FineTune
from transferlab.fitloop import Hook


class StartingPointPenalty(Hook):
    """``alpha / 2 * sum ||w - w0||^2`` over the given parameters, w0 their values now."""

    batchable = True

    def __init__(self, params: list[nn.Parameter], alpha: float):
        self.pairs = [(p, p.detach().clone()) for p in params]
        self.alpha = alpha

    def penalty(self, model: nn.Module) -> torch.Tensor:
        return self.alpha / 2 * sum(((p - p0) ** 2).sum() for p, p0 in self.pairs)


@register
@dataclass(frozen=True)
class L2SP(FineTune):
    name = "l2sp"
    summary = "finetune with an L2 penalty alpha/2 ||w - w0||^2 pulling the body toward its pretrained weights (L2-SP)"
    alpha: float = 0.01

    def check(self, backbone) -> None:
        super().check(backbone)
        if not self.alpha >= 0:
            raise UserError(f"l2sp needs alpha >= 0, got {self.alpha}", "use for example alpha=0.01")

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        return self.fine_tune(ctx, candidate, lambda bb: (StartingPointPenalty(list(bb.blocks.parameters()), self.alpha),))
