"""ULMFiT-style gradual unfreezing: the head first, then one more block each epoch from the top."""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones.base import Backbone
from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.training import Hook, param_groups


class _Unfreeze(Hook):
    def __init__(self, bb: Backbone, every: int):
        self.bb, self.every = bb, every

    def on_epoch_start(self, epoch: int, model) -> None:
        # epoch 1: all blocks frozen; each `every` epochs one more block from the top trains.
        k = max(0, self.bb.n_blocks - (epoch - 1) // self.every)
        if k != self.bb.frozen_k:
            self.bb.freeze(k)


@register
@dataclass(frozen=True)
class Gradual(Strategy):
    name = "gradual"
    summary = "gradual unfreezing from the top, one block group per epoch (ULMFiT)"
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
        # Counted at the start only the head would train: count what the budget's last epoch trains.
        last = max(0, bb.n_blocks - (ctx.budget.epochs - 1) // self.every)
        fitted.trainable_params = sum(p.numel() for b in list(bb.blocks.values())[last:] for p in b.parameters()) + \
            sum(p.numel() for p in bb.head.parameters())
        return fitted
