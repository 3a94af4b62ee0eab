"""The control: the same architecture, every weight drawn afresh."""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.training import param_groups


@register
@dataclass(frozen=True)
class Scratch(Strategy):
    name = "scratch"
    summary = "same architecture re-initialised and trained on the target alone (the control)"
    reuses_weights = False

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        bb = ctx.fresh().reinit().replace_head(ctx.data.n_classes, class_names=ctx.data.class_names)
        groups = param_groups(list(bb.blocks.values()), bb.head, candidate["lr"])
        return train_backbone(ctx, bb, 0, groups)
