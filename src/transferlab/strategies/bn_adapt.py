"""AdaBN (Li et al. 2016): BatchNorm statistics re-estimated on the target, then a new head on the frozen body.

No gradient reaches the body. One pass over the trial's training inputs replaces every BatchNorm layer's
running mean and variance with the target's; the body is then fixed again, so its activations are computed
once (cached) and only a linear head trains on them, like ``head(depth=1)`` on an adapted body. The
project's own benchmark found that letting frozen BatchNorm adapt lifts a frozen resnet10t by several points.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch

from transferlab.backbones.base import _NORM_TYPES, Backbone
from transferlab.data.base import Inputs, n_rows, take
from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.training import param_groups


@torch.no_grad()
def adapt_batchnorm(backbone: Backbone, inputs: Inputs, batch_size: int, device="cpu") -> Backbone:
    """Replace every BatchNorm layer's running statistics by those of ``inputs`` (in place; returns it).

    The statistics are the cumulative average over batches (``momentum=None``), as
    ``torch.optim.swa_utils.update_bn`` computes them, but only BatchNorm is in train mode: dropout stays off.
    """
    from transferlab.accel import move

    norms = [m for m in backbone.blocks.modules() if isinstance(m, _NORM_TYPES)]
    momenta = [m.momentum for m in norms]
    backbone.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    n = n_rows(inputs)
    for start in range(0, n, batch_size):
        x = take(inputs, torch.arange(start, min(start + batch_size, n)))
        backbone.features(move(x, device), backbone.n_blocks)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return backbone.eval()


@register
@dataclass(frozen=True)
class BNAdapt(Strategy):
    name = "bn_adapt"
    summary = "BatchNorm statistics re-estimated on the target (AdaBN, no gradient), then a linear head on the frozen body"
    adapts_statistics = True

    def applies(self, backbone: Backbone) -> str | None:
        if not backbone.norm_blocks():
            return "the model has no BatchNorm layers to adapt (it would equal a linear head on the frozen body)"
        return None

    def reads_cut(self, backbone: Backbone) -> int | None:
        return None  # it reads its own adapted body's features (cached under that body's key), not the pretrained's

    def trains_from(self, backbone: Backbone) -> int | None:
        return backbone.n_blocks

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        idx, data = ctx.train_idx, ctx.data
        if "adabn" not in ctx.memo:  # one adaptation pass per trial, shared by every LR candidate
            body = adapt_batchnorm(ctx.fresh(), data.train.subset(idx).inputs, ctx.budget.eval_batch_size, ctx.device)
            ctx.memo["adabn"] = body
        body = ctx.memo["adabn"]
        if data.augment is None:  # only the trial's own examples are needed; augmented views index the whole pool
            data, idx = replace(data, train=data.train.subset(idx)), torch.arange(len(idx)).numpy()
        key = f"{ctx.model_key}-adabn{ctx.budget.eval_batch_size}-{hashlib.sha1(ctx.train_idx.tobytes()).hexdigest()[:12]}"
        sub = replace(ctx.with_body(body, key), data=data, train_idx=idx)
        bb = body.clone().replace_head(data.n_classes, class_names=data.class_names)
        bb.freeze(bb.n_blocks)
        return train_backbone(sub, bb, bb.n_blocks, param_groups([], bb.head, candidate["lr"]))
