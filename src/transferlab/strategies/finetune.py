"""Fine-tune everything, with a smaller learning rate for the pretrained body."""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.errors import UserError
from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.training import param_groups


@register
@dataclass(frozen=True)
class FineTune(Strategy):
    """Body LR = head LR x ``body_lr_mult`` x ``layer_decay`` ^ (blocks between it and the head)."""

    name = "finetune"
    summary = "all blocks trainable, discriminative learning rates (body = head x body_lr_mult)"
    body_lr_mult: float = 0.1
    layer_decay: float = 1.0

    def check(self, backbone) -> None:
        if not (self.body_lr_mult >= 0 and 0 < self.layer_decay <= 1):
            raise UserError(f"finetune needs body_lr_mult >= 0 and 0 < layer_decay <= 1, got {self.body_lr_mult}, {self.layer_decay}",
                            "use for example body_lr_mult=0.1, layer_decay=0.8")

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        return self.fine_tune(ctx, candidate)

    def fine_tune(self, ctx: TrialContext, candidate: dict, hooks=lambda bb: ()) -> Fitted:
        """The fine-tuning run; ``hooks(bb)`` adds fit hooks built on the fresh model (l2sp's penalty)."""
        bb = ctx.fresh().replace_head(ctx.data.n_classes, class_names=ctx.data.class_names)
        groups = param_groups(list(bb.blocks.values()), bb.head, candidate["lr"], self.body_lr_mult, self.layer_decay)
        return train_backbone(ctx, bb, 0, groups, hooks=hooks(bb))
