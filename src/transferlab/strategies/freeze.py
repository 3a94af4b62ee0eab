"""Freeze the first k blocks, fine-tune the rest with one learning rate."""
from __future__ import annotations

from dataclasses import dataclass

from transferlab.backbones.base import Backbone
from transferlab.strategies.base import Fitted, PlanContext, Strategy, TrialContext, register, train_backbone
from transferlab.training import param_groups


AUTO_DEPTHS = 3  # with depths="auto", the best cuts by the profile's mean rank, plus k=0


def auto_depths(prof: dict, n: int = AUTO_DEPTHS) -> list[int]:
    """Freeze depths worth training: the cuts the scores rank highest (mean rank over the four scores)."""
    import numpy as np
    from scipy.stats import rankdata

    cuts = prof["cuts"]
    ranks = np.mean([rankdata([-c[s] for c in cuts]) for s in ("logme", "hscore", "knn_acc", "probe_acc")], axis=0)
    best = [cuts[i]["k"] for i in np.argsort(ranks, kind="stable")[:n]]
    return sorted({0, *best})


@register
@dataclass(frozen=True)
class FreezeK(Strategy):
    """``k=None`` runs every cut point 0..n_blocks."""

    name = "freeze_k"
    depth_param = "k"
    summary = "first k blocks frozen (BatchNorm in eval mode), the rest and a new head fine-tuned"
    k: int | None = None
    train_bn: bool = False

    def applies(self, backbone: Backbone) -> str | None:
        if self.train_bn and not backbone.norm_blocks():
            return "train_bn=True needs BatchNorm layers, and the model has none (it would equal train_bn=False)"
        return None

    def expand(self, backbone: Backbone, plan: PlanContext | None = None) -> list[Strategy]:
        if self.k is not None:
            return [self]
        # Freezing a block without weights (a pooling block) changes nothing: skip that duplicate depth.
        # With train_bn, a depth whose frozen blocks hold no BatchNorm equals train_bn=False: skipped too.
        blocks = list(backbone.blocks.values())
        depths = [k for k in range(backbone.n_blocks + 1) if k == 0 or any(True for _ in blocks[k - 1].parameters())]
        if self.train_bn:
            norms = backbone.norm_blocks()
            depths = [k for k in depths if any(i < k for i in norms)]
        chosen = (plan or PlanContext()).depths
        if chosen != "all":
            keep = auto_depths(plan.profile) if chosen == "auto" else chosen
            for k in keep:
                backbone._check_k(k)
            depths = [k for k in depths if k in keep]
        return [FreezeK(k=k, train_bn=self.train_bn) for k in depths]

    def check(self, backbone: Backbone) -> None:
        if self.k is not None:
            backbone._check_k(self.k)

    def trains_from(self, backbone: Backbone) -> int | None:
        return 0 if self.train_bn else (self.k or 0)  # train_bn: gradients reach the frozen blocks' BatchNorm

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        bb = ctx.fresh().replace_head(ctx.data.n_classes, class_names=ctx.data.class_names)
        bb.freeze(self.k, train_bn=self.train_bn)
        # param_groups keeps only trainable parameters: BatchNorm ones inside frozen blocks when train_bn.
        groups = param_groups(list(bb.blocks.values()), bb.head, candidate["lr"])
        return train_backbone(ctx, bb, self.k, groups)
