"""Surgical fine-tuning (Lee et al., ICLR 2023): only one block (and the new head) trains.

Which block is best depends on the shift: the first blocks for input-level shift (new image statistics),
the last for a change in what the labels mean. ``block=None`` runs one configuration per block with weights,
so the study measures it; the report draws them beside the freeze-depth curve, at the same x (the first
block that trains: freeze_k(k=j) trains j and everything after it, surgical(block=j) trains j alone).
"""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones.base import Backbone
from transferlab.errors import UserError
from transferlab.strategies.base import Fitted, PlanContext, Strategy, TrialContext, register, train_backbone
from transferlab.training import param_groups


def weighted_blocks(backbone: Backbone) -> list[int]:
    """Indices of the blocks that have parameters (tuning a pooling block alone would tune nothing)."""
    return [i for i, b in enumerate(backbone.blocks.values()) if any(True for _ in b.parameters())]


@register
@dataclass(frozen=True)
class Surgical(Strategy):
    name = "surgical"
    depth_param = "block"
    summary = "only block `block` and a new head train, every other block frozen (Lee et al. 2023); block=None: each"
    block: int | None = None

    def expand(self, backbone: Backbone, plan: PlanContext | None = None) -> list[Strategy]:
        if self.block is not None:
            return [self]
        return [Surgical(block=j) for j in weighted_blocks(backbone)]

    def check(self, backbone: Backbone) -> None:
        if self.block is not None and self.block not in weighted_blocks(backbone):
            raise UserError(f"surgical block={self.block} is not a block with weights of this model "
                            f"({', '.join(f'{i}: {backbone.block_names[i]}' for i in weighted_blocks(backbone))})",
                            "choose one of those indices, or leave block out to run each")

    def trains_from(self, backbone: Backbone) -> int | None:
        return self.block or 0

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        bb = ctx.fresh().replace_head(ctx.data.n_classes, class_names=ctx.data.class_names)
        bb.freeze_blocks(i for i in range(bb.n_blocks) if i != self.block)
        # Blocks before `block` are a fixed prefix (cached); the frozen blocks after it stay in the
        # trained path, in eval mode, passing gradients back to `block`.
        return train_backbone(ctx, bb, self.block, param_groups(list(bb.blocks.values()), bb.head, candidate["lr"]))
