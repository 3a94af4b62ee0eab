"""Yosinski et al. (2014) splice: the first n blocks copied from a trained network, the rest re-initialised.

With ``tune=False`` the copied blocks are frozen (AnB, or BnB when the network was trained on the target
itself); with ``tune=True`` everything trains (AnB+, BnB+).  The gap between the frozen and tuned curves
shows where co-adapted layers are fragile when split; the gap between A and B shows where features
become specific to the source.
"""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones.base import Backbone
from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.training import param_groups


@register
@dataclass(frozen=True)
class Splice(Strategy):
    name = "splice"
    summary = "first n blocks kept (frozen, or tuned with tune=True), the rest re-initialised (Yosinski 2014)"
    n: int = 1
    tune: bool = False

    def check(self, backbone: Backbone) -> None:
        backbone._check_k(self.n)

    def trains_from(self, backbone: Backbone) -> int | None:
        return 0 if self.tune else self.n

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        bb = ctx.fresh().reinit(from_block=self.n).replace_head(ctx.data.n_classes, class_names=ctx.data.class_names)
        k = 0 if self.tune else self.n
        bb.freeze(k)
        return train_backbone(ctx, bb, k, param_groups(list(bb.blocks.values()), bb.head, candidate["lr"]))
