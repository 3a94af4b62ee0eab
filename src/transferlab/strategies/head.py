"""Frozen body, a new trainable head of configurable depth on top, reading standardised features."""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones.base import Backbone
from transferlab.strategies.base import Fitted, Strategy, TrialContext, check_cut, register, train_backbone
from transferlab.training import param_groups


@register
@dataclass(frozen=True)
class Head(Strategy):
    """``depth`` Linear layers on the frozen features (depth=3: 'add three more layers on top').

    The features are standardised with statistics of the trial's training rows (every augmented view), as
    the linear probe's are: raw frozen features can be tiny or huge, and an MLP on them then trains slowly
    or not at all, which would make the head look worse than a logistic regression on the same features.

    ``cut=k``: the head reads the pooled activations after block k, and the blocks after it are removed (the
    network ``truncate`` keeps, frozen, with this head); ``cut="each"`` runs one head per cut.
    """

    name = "head"
    depth_param = "cut"
    removes_later = True
    summary = "body frozen, a new MLP head of `depth` layers trained on its features (at the last cut, or cut=k)"
    depth: int = 2
    hidden: int = 256
    dropout: float = 0.0
    cut: int | str | None = None  # None: the last cut; "each": every cut

    def check(self, backbone: Backbone) -> None:
        check_cut(backbone, self.cut, "head cut")

    def trains_from(self, backbone: Backbone) -> int | None:
        return backbone.n_blocks if self.cut is None else self.cut

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        k = ctx.pretrained.n_blocks if self.cut is None else self.cut
        bb = ctx.fresh().truncate(k)
        bb.replace_head(ctx.data.n_classes, self.depth, self.hidden, self.dropout, ctx.data.class_names)
        bb.freeze(k)
        return train_backbone(ctx, bb, k, param_groups([], bb.head, candidate["lr"]))
