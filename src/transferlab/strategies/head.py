"""Frozen body, a new trainable head of configurable depth on top, reading standardised features."""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones.base import Backbone
from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.training import param_groups


@register
@dataclass(frozen=True)
class Head(Strategy):
    """``depth`` Linear layers on the frozen features (depth=3: 'add three more layers on top').

    The features are standardised with statistics of the trial's training rows (every augmented view), as
    the linear probe's are: raw frozen features can be tiny or huge, and an MLP on them then trains slowly
    or not at all, which would make the head look worse than a logistic regression on the same features.
    """

    name = "head"
    summary = "body frozen, a new MLP head of `depth` layers trained on its features"
    depth: int = 2
    hidden: int = 256
    dropout: float = 0.0

    def trains_from(self, backbone: Backbone) -> int | None:
        return backbone.n_blocks

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        bb = ctx.fresh().replace_head(ctx.data.n_classes, self.depth, self.hidden, self.dropout, ctx.data.class_names)
        k = bb.n_blocks
        bb.freeze(k)
        return train_backbone(ctx, bb, k, param_groups([], bb.head, candidate["lr"]))
