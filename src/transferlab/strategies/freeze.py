"""Freeze the first k blocks, fine-tune the rest with one learning rate."""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones.base import Backbone
from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.training import param_groups


@register
@dataclass(frozen=True)
class FreezeK(Strategy):
    """``k=None`` runs every cut point 0..n_blocks."""

    name = "freeze_k"
    summary = "first k blocks frozen (BatchNorm in eval mode), the rest and a new head fine-tuned"
    k: int | None = None
    train_bn: bool = False

    def expand(self, backbone: Backbone) -> list[Strategy]:
        if self.k is not None:
            return [self]
        # Freezing a block without weights (a pooling block) changes nothing: skip that duplicate depth.
        blocks = list(backbone.blocks.values())
        depths = [k for k in range(backbone.n_blocks + 1) if k == 0 or any(True for _ in blocks[k - 1].parameters())]
        return [FreezeK(k=k, train_bn=self.train_bn) for k in depths]

    def check(self, backbone: Backbone) -> None:
        if self.k is not None:
            backbone._check_k(self.k)

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        bb = ctx.fresh().replace_head(ctx.data.n_classes, class_names=ctx.data.class_names)
        bb.freeze(self.k, train_bn=self.train_bn)
        # param_groups keeps only trainable parameters: BatchNorm ones inside frozen blocks when train_bn.
        groups = param_groups(list(bb.blocks.values()), bb.head, candidate["lr"])
        return train_backbone(ctx, bb, self.k, groups)
