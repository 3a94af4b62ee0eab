"""Transferability scores of frozen features, computed before any training (numpy / scikit-learn only).

- LogME (You et al. 2021): the log marginal evidence of Bayesian linear regression from the
  features to each one-hot label column, maximised over the prior and noise precisions by
  MacKay's fixed point, averaged over classes and divided by n.
- H-score (Bao et al. 2019): tr(cov(f)^-1 cov(E[f | y])).
- LEEP (Nguyen et al. 2020) and NCE (Tran et al. 2019): from the source classifier's
  predictions on the target inputs, when that classifier exists.
- kNN and linear-probe accuracy on the validation split.

No single score ranks layers reliably across tasks, so all are reported side by side.
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def evidence(s: np.ndarray, proj2: np.ndarray, yy: float, n: int, alpha: float, beta: float) -> tuple[float, float, float]:
    """Log evidence of y under F given alpha, beta; also |m|^2 and |y - F m|^2.

    ``s`` are the eigenvalues of F^T F and ``proj2`` the squared projections (V^T F^T y)^2.
    """
    d = len(s)
    denom = alpha + beta * s
    mm = float((beta ** 2 * proj2 / denom ** 2).sum())
    # |y - F m|^2 = y'y - 2 beta sum(proj2 / denom) + beta^2 sum(s proj2 / denom^2)
    res = float(yy - 2 * beta * (proj2 / denom).sum() + beta ** 2 * (s * proj2 / denom ** 2).sum())
    res = max(res, 1e-12)
    ev = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - beta / 2 * res - alpha / 2 * mm
          - 0.5 * float(np.log(denom).sum()) - n / 2 * math.log(2 * math.pi))
    return ev, mm, res


def _eigs(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, v = np.linalg.eigh(f.T @ f)
    return np.clip(s, 0, None), v


def logme_column(f: np.ndarray, y: np.ndarray, s=None, v=None, iters: int = 100, tol: float = 1e-6) -> tuple[float, float, float]:
    """Maximised evidence / n for one target column, with the alpha and beta found."""
    if s is None:
        s, v = _eigs(f)
    n = len(y)
    proj2 = (v.T @ (f.T @ y)) ** 2
    yy = float(y @ y)
    alpha, beta = 1.0, 1.0
    for _ in range(iters):
        _, mm, res = evidence(s, proj2, yy, n, alpha, beta)
        gamma = float((beta * s / (alpha + beta * s)).sum())
        new_alpha, new_beta = gamma / max(mm, 1e-12), (n - gamma) / res
        done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return evidence(s, proj2, yy, n, alpha, beta)[0] / n, alpha, beta


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    f = np.asarray(features, dtype=np.float64)
    s, v = _eigs(f)
    classes = np.unique(labels)
    return float(np.mean([logme_column(f, (labels == c).astype(np.float64), s, v)[0] for c in classes]))


def hscore(features: np.ndarray, labels: np.ndarray, shrink: float = 1e-3) -> float:
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(0)
    cov_f = np.cov(f, rowvar=False) + shrink * np.eye(f.shape[1])  # a little ridge keeps the inverse stable
    g = np.zeros_like(f)
    for c in np.unique(labels):
        g[labels == c] = f[labels == c].mean(0)
    cov_g = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.solve(cov_f, cov_g)))


def _joint(source_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n_y = int(labels.max()) + 1
    joint = np.zeros((n_y, source_probs.shape[1]))
    for c in range(n_y):
        joint[c] = source_probs[labels == c].sum(0)
    return joint / len(labels)


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean log-likelihood of the labels under the 'expected empirical predictor' built from source outputs."""
    joint = _joint(source_probs, labels)
    cond = joint / np.clip(joint.sum(0, keepdims=True), 1e-12, None)  # P(y | z)
    eep = (source_probs @ cond.T)[np.arange(len(labels)), labels]
    return float(np.log(np.clip(eep, 1e-12, None)).mean())


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """Negative conditional entropy -H(Y | Z), Z the source model's hard prediction."""
    hard = np.eye(source_probs.shape[1])[source_probs.argmax(1)]
    joint = _joint(hard, labels)
    pz = joint.sum(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / pz), 0.0)
    return float(terms.sum())


def knn_accuracy(train_x, train_y, val_x, val_y, k: int = 5) -> float:
    k = max(1, min(k, len(train_y) - 1))
    clf = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k)).fit(train_x, train_y)
    return float(clf.score(val_x, val_y))


def probe_accuracy(train_x, train_y, val_x, val_y, seed: int = 0) -> float:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed)).fit(train_x, train_y)
    return float(clf.score(val_x, val_y))


def a_distance(source_x: np.ndarray, target_x: np.ndarray, seed: int = 0) -> float:
    """Proxy A-distance 2(1 - 2 err) of a domain classifier (5-fold CV): 0 = indistinguishable, 2 = disjoint."""
    from sklearn.model_selection import cross_val_score

    n = min(len(source_x), len(target_x))
    rng = np.random.default_rng(seed)
    xs = source_x[rng.permutation(len(source_x))[:n]]
    xt = target_x[rng.permutation(len(target_x))[:n]]
    x = np.vstack([xs, xt])
    d = np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
    err = 1 - cross_val_score(clf, x, d, cv=5).mean()
    return float(2 * (1 - 2 * min(err, 0.5)))


def kendall_tau(a, b) -> float | None:
    from scipy.stats import kendalltau

    if len(a) < 3:
        return None
    tau = kendalltau(a, b).statistic
    return None if tau != tau else float(tau)
