"""A smaller network: the first n pretrained blocks kept, every later block removed, a new head on block n's
pooled output (seed 004: "you cannot remove layers with confidence to reduce the number of parameters").

``tune=False`` keeps the blocks frozen (a linear head on the cut's features, trained by SGD like every head);
``tune=True`` fine-tunes them with the head. Unlike ``splice``, which re-initialises the later blocks and keeps
the network's size, the removed blocks are gone: the trial records the smaller network's parameters and its
inference time per example, and ``--save-best`` saves it.
"""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones.base import Backbone
from transferlab.strategies.base import EACH, Fitted, PlanContext, Strategy, TrialContext, check_cut, register, train_backbone
from transferlab.training import param_groups


@register
@dataclass(frozen=True)
class Truncate(Strategy):
    """``n=None`` (or ``"each"``) runs every cut 1..n_blocks (the study's ``depths``), as ``freeze_k`` does."""

    name = "truncate"
    depth_param = "n"
    removes_later = True
    summary = "first n blocks kept (frozen, or fine-tuned with tune=True), later blocks removed, a new head on block n"
    n: int | None = None
    tune: bool = False

    def expand(self, backbone: Backbone, plan: PlanContext | None = None) -> list[Strategy]:
        if self.n is None:  # no n: every cut, as n="each"
            return Truncate(n=EACH, tune=self.tune).expand(backbone, plan)
        return super().expand(backbone, plan)

    def check(self, backbone: Backbone) -> None:
        check_cut(backbone, self.n, "truncate n")

    def trains_from(self, backbone: Backbone) -> int | None:
        return 0 if self.tune else self.n

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        bb = ctx.fresh().truncate(self.n).replace_head(ctx.data.n_classes, class_names=ctx.data.class_names)
        k = 0 if self.tune else self.n
        bb.freeze(k)
        return train_backbone(ctx, bb, k, param_groups(list(bb.blocks.values()), bb.head, candidate["lr"]))
