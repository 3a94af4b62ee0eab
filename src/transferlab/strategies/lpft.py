"""Linear probe, then full fine-tune from the probed head (Kumar et al. 2022, LP-FT).

Fine-tuning from a random head distorts the pretrained features while the head
is still wrong; starting from a probed head avoids that.  The probe is fitted
by scikit-learn on the frozen features and folded into the model's new linear
head, so step 0 of the curve is the probe's own accuracy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from transferlab.backbones.base import Backbone
from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.strategies.probe import as_matrix, make_classifier, score
from transferlab.fitloop import EvalLog, evaluate
from transferlab.training import param_groups


def fold_probe(pipe, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias of one Linear layer equal to StandardScaler + LogisticRegression."""
    scaler, clf = pipe[0], pipe[-1]
    coef, intercept = clf.coef_, clf.intercept_
    if n_classes == 2 and coef.shape[0] == 1:  # sklearn keeps one row for binary; softmax needs two
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    weight = coef / scale
    bias = intercept - (coef * scaler.mean_ / scale).sum(axis=1)
    return weight, bias


@register
@dataclass(frozen=True)
class LPFT(Strategy):
    name = "lp_ft"
    summary = "linear probe first, then fine-tune everything from the probed head (Kumar et al. 2022)"
    body_lr_mult: float = 1.0
    probe_C: float = 1.0

    def reads_cut(self, backbone: Backbone) -> int | None:
        return backbone.n_blocks  # the probe's features; the fine-tuning then trains every block

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        t0 = time.perf_counter()
        n = ctx.data.n_classes
        bb = ctx.fresh().replace_head(n, class_names=ctx.data.class_names)
        k = bb.n_blocks
        x, y = as_matrix(ctx.train_features(k))
        pipe = make_classifier("logreg", self.probe_C, ctx.seed).fit(x, y)
        weight, bias = fold_probe(pipe, n)
        linear = bb.head[-1]
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
            linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))
        train_loss, train_acc = score(pipe, x, y, n)
        val_loss, val_acc = evaluate(bb, ctx.val_split(0), ctx.budget.eval_batch_size, ctx.device)
        log0 = EvalLog(0, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - t0)
        groups = param_groups(list(bb.blocks.values()), bb.head, candidate["lr"], self.body_lr_mult)
        return train_backbone(ctx, bb, 0, groups, log0=log0)
