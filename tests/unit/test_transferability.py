"""Transferability scores against hand computations and direct optimisation on tiny inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from transferlab.analysis import transferability as tr
from transferlab.analysis.cka import linear_cka


def direct_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """max over (alpha, beta) of log N(y | 0, I/beta + F F^T/alpha), by Nelder-Mead on the logs, / n."""
    n = len(y)

    def neg(log_ab):
        alpha, beta = np.exp(log_ab)
        cov = np.eye(n) / beta + f @ f.T / alpha
        sign, logdet = np.linalg.slogdet(cov)
        return 0.5 * (logdet + y @ np.linalg.solve(cov, y) + n * math.log(2 * math.pi))

    best = min((minimize(neg, x0, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000})
                for x0 in ([0.0, 0.0], [2.0, -1.0], [-2.0, 2.0])), key=lambda r: r.fun)
    return -best.fun / n


def test_logme_equals_direct_evidence_maximisation():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(40, 5))
    y = (f @ rng.normal(size=5) + 0.3 * rng.normal(size=40) > 0).astype(float)
    ours, alpha, beta = tr.logme_column(f, y)
    assert ours == pytest.approx(direct_evidence(f, y), abs=1e-6)
    labels = (f[:, 0] > 0).astype(int)
    per_class = [direct_evidence(f, (labels == c).astype(float)) for c in (0, 1)]
    assert tr.logme(f, labels) == pytest.approx(np.mean(per_class), abs=1e-6)


def test_logme_prefers_informative_features():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=90)
    good = np.eye(3)[labels] * 3 + rng.normal(size=(90, 3))
    noise = rng.normal(size=(90, 3))
    assert tr.logme(good, labels) > tr.logme(noise, labels)


def test_cka_properties():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 8))
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.7 * x @ q) == pytest.approx(1.0)  # orthogonal transform and isotropic scale
    assert linear_cka(x, x + 5.0) == pytest.approx(1.0)  # centring
    assert linear_cka(x, rng.normal(size=(50, 8))) < 0.4


def test_leep_and_nce_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7]])
    labels = np.array([0, 0, 1, 1])
    joint = np.array([[1.7, 0.3], [0.5, 1.5]]) / 4
    cond = joint / joint.sum(0)
    want = np.mean([math.log(probs[i] @ cond[labels[i]]) for i in range(4)])
    assert tr.leep(probs, labels) == pytest.approx(want)
    assert tr.nce(probs, labels) == pytest.approx(0.0)  # hard predictions determine the labels exactly
    assert tr.nce(np.array([[0.9, 0.1]] * 4), labels) == pytest.approx(-math.log(2))


def test_hscore_by_hand():
    f = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    labels = np.array([0, 0, 1, 1])
    fc = f - f.mean(0)
    g = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]]) - f.mean(0)
    want = np.trace(np.linalg.solve(np.cov(fc, rowvar=False) + 1e-3 * np.eye(2), np.cov(g, rowvar=False)))
    assert tr.hscore(f, labels) == pytest.approx(want)


def test_a_distance_extremes():
    rng = np.random.default_rng(3)
    same = tr.a_distance(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)))
    apart = tr.a_distance(rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 10)
    assert same < 0.4 and apart > 1.9
