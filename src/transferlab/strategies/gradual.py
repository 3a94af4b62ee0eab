"""ULMFiT-style gradual unfreezing: the head first, then one more block each evaluation period from the top.

ULMFiT unfreezes one layer group per epoch; with a step budget an epoch of a small data set is one step, so
the unit here is the evaluation period (about a pass, at least budget/40 steps)."""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones.base import Backbone
from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.fitloop import Hook
from transferlab.training import param_groups


class _Unfreeze(Hook):
    batchable = True  # freezes its own member's blocks

    def __init__(self, bb: Backbone, every: int):
        self.bb, self.every = bb, every

    def on_period_start(self, period: int, model) -> None:
        # period 1: all blocks frozen; each `every` periods one more block from the top trains.
        k = max(0, self.bb.n_blocks - (period - 1) // self.every)
        if k != self.bb.frozen_k:
            self.bb.freeze(k)


@register
@dataclass(frozen=True)
class Gradual(Strategy):
    name = "gradual"
    summary = "gradual unfreezing from the top, one block group per evaluation period (ULMFiT)"
    body_lr_mult: float = 0.1
    every: int = 1

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        bb = ctx.fresh().replace_head(ctx.data.n_classes, class_names=ctx.data.class_names)
        bb.freeze(bb.n_blocks)
        # Every parameter is in the optimizer from the start; frozen ones get no gradient and so no update.
        for p in bb.parameters():
            p.requires_grad_(True)
        groups = param_groups(list(bb.blocks.values()), bb.head, candidate["lr"], self.body_lr_mult)
        bb.freeze(bb.n_blocks)
        fitted = train_backbone(ctx, bb, 0, groups, hooks=(_Unfreeze(bb, self.every),))
        fitted.frozen_blocks = 0
        # Counted at the start only the head would train: count what the budget's last period trains.
        plan = ctx.budget.plan(len(ctx.train_idx))
        last = max(0, bb.n_blocks - (plan.steps // plan.eval_every - 1) // self.every)
        fitted.trainable_params = sum(p.numel() for b in list(bb.blocks.values())[last:] for p in b.parameters()) + \
            sum(p.numel() for p in bb.head.parameters())
        return fitted
