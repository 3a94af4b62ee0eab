"""Frozen body as a fixed feature extractor, with a linear classifier or a linear SVM.

The classifier is scikit-learn's: multinomial logistic regression or LinearSVC
on standardised features, its L2 strength C chosen on validation from a log grid
with as many points as the learning-rate grid the other strategies tune.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import hinge_loss, log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from transferlab.backbones.base import Backbone
from transferlab.data.base import Split
from transferlab.errors import UserError
from transferlab.moved import pooled
from transferlab.strategies.base import Fitted, Strategy, TrialContext, check_cut, register
from transferlab.fitloop import EvalLog, FitResult
from transferlab.training import Budget

KINDS = ("logreg", "svm")


def as_matrix(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """A cut's activations pooled to (n, channels) (``pool_state``: the last cut's features as they are)."""
    return pooled(split.inputs), split.y.numpy()


def make_classifier(kind: str, C: float, seed: int):
    if kind == "logreg":
        clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    else:
        clf = LinearSVC(C=C, max_iter=5000, random_state=seed)
    return make_pipeline(StandardScaler(), clf)


def score(pipe, x: np.ndarray, y: np.ndarray, n_classes: int, correct_rows: list | None = None) -> tuple[float, float]:
    """(loss, accuracy): log loss for logistic regression, multiclass hinge for the SVM."""
    labels = np.arange(n_classes)
    hit = pipe.predict(x) == y
    acc = float(hit.mean())
    if correct_rows is not None:
        correct_rows.extend(hit.tolist())
    if hasattr(pipe, "predict_proba") and hasattr(pipe[-1], "predict_proba"):
        return float(log_loss(y, pipe.predict_proba(x), labels=labels)), acc
    return float(hinge_loss(y, pipe.decision_function(x), labels=labels)), acc


@register
@dataclass(frozen=True)
class LinearProbe(Strategy):
    """``cut=k`` reads the pooled activations after block k (everything later is removed); ``cut="each"`` runs
    one probe per cut (the study's ``depths``), so a depth curve shows which layers' features to keep."""

    name = "linear_probe"
    depth_param = "cut"
    removes_later = True
    summary = "body frozen; its features (at the last cut, or cut=k) + logistic regression or a linear SVM"
    kind: str = "logreg"
    cut: int | str | None = None  # None: the last cut, the features the head reads; "each": every cut
    Cs: tuple[float, ...] | None = None

    def check(self, backbone: Backbone) -> None:
        if self.kind not in KINDS:
            raise UserError(f"linear_probe kind '{self.kind}' is unknown", f"use one of: {', '.join(KINDS)}")
        check_cut(backbone, self.cut, "linear_probe cut")

    def candidates(self, budget: Budget) -> list[dict]:
        Cs = self.Cs or tuple(np.logspace(-2, 2, len(budget.lrs)).round(6))
        return [{"C": float(c)} for c in Cs]

    def trains_from(self, backbone: Backbone) -> int | None:
        return None

    def reads_cut(self, backbone: Backbone) -> int | None:
        return backbone.n_blocks if self.cut is None else self.cut

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        t0 = time.perf_counter()
        k = ctx.pretrained.n_blocks if self.cut is None else self.cut
        x, y = as_matrix(ctx.train_features(k))
        xv, yv = as_matrix(ctx.features(k, ctx.data.key("val"), ctx.data.val))
        pipe = make_classifier(self.kind, candidate["C"], ctx.seed).fit(x, y)
        n = ctx.data.n_classes
        train_loss, train_acc = score(pipe, x, y, n)
        val_loss, val_acc = score(pipe, xv, yv, n)
        log = EvalLog(0, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - t0)
        # Solved to convergence (L-BFGS / liblinear), as Kornblith et al. 2019 do: it converged unless the
        # solver ran out of iterations.
        converged = bool(np.all(np.asarray(pipe[-1].n_iter_) < pipe[-1].max_iter))
        result = FitResult([log], 0, val_acc, val_loss, converged=converged, stop="converged" if converged else "limit")

        def evaluate(split: Split, key: str = "test", correct_rows: list | None = None) -> tuple[float, float]:
            return score(pipe, *as_matrix(ctx.features(k, key, split)), n, correct_rows)

        trainable = x.shape[1] * n + n
        kept = list(ctx.pretrained.blocks.values())[:k]
        net = []  # the deployed network, blocks 1..k and a pool, on the trial's device: made when first timed

        def predict(inputs) -> torch.Tensor:
            if not net:
                net.append(ctx.fresh().truncate(k).eval())
            small = net[0]
            return torch.as_tensor(pipe.decision_function(pooled(small.features(inputs, small.n_blocks).cpu())))

        return Fitted(result, trainable, evaluate, pipe, ctx.uses_cache(k), k,
                      deploy_params=sum(p.numel() for b in kept for p in b.parameters()) + trainable, predictor=predict)
