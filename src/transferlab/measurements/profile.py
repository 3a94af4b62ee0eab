"""Per-layer transferability before training: LogME, H-score, kNN and linear-probe validation accuracy per cut;
LEEP and NCE once for the source classifier; the proxy A-distance when source data is given.

One pass over the target train pool and validation split yields the activations at every cut (the study's
shared cache), so the frozen trials that follow reuse it.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from transferlab.analysis import transferability as tr
from transferlab.backbones.base import Backbone
from transferlab.cache import FeatureCache, pooled_pass
from transferlab.data.base import TargetData, take
from transferlab.measurements import Measurement, Preflight, register
from transferlab.moved import pooled

MAX_ROWS = 2000  # scores on at most this many train examples (stratified), to keep the profile a small cost


def scored_rows(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(y) <= limit:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=y, random_state=seed)
    return np.sort(keep)


def profile(backbone: Backbone, data: TargetData, cache: FeatureCache | None = None, key: str = "profile",
            seed: int = 0) -> dict:
    """Scores per cut of the (already preprocessed) target data."""
    t0 = time.perf_counter()
    cache = cache or FeatureCache()
    idx = scored_rows(data.train.y.numpy(), MAX_ROWS, seed)
    ytr, yval = data.train.y.numpy()[idx], data.val.y.numpy()
    cuts = range(1, backbone.n_blocks + 1)
    # The cuts the study caches anyway (its frozen trials read them, ``pipeline.cached_cuts``) come from the pool's
    # cached activations; the rest are pooled batch by batch on the scored rows only, so a big image folder's
    # profile keeps memory bounded and no cut is computed for the whole pool that nothing else reads.
    held = [k for k in cuts if k in cache.wanted and cache.holds(backbone, key, data.train, k)]
    rest = [k for k in cuts if k not in held]
    streamed = ({}, {}) if not rest else (
        pooled_pass(backbone, data.train.subset(idx), rest, cache.batch_size, cache.device),
        pooled_pass(backbone, data.val, rest, cache.batch_size, cache.device))
    rows = []
    for k in cuts:
        if k in held:
            xtr = pooled(take(cache.states(backbone, key, "train", data.train, k).inputs, torch.as_tensor(idx)))
            xval = pooled(cache.states(backbone, key, "val", data.val, k).inputs)
        else:
            xtr, xval = streamed[0][k], streamed[1][k]
        rows.append({"k": k, "name": backbone.block_names[k - 1], "dim": int(xtr.shape[1]),
                     "logme": tr.logme(xtr, ytr), "hscore": tr.hscore(xtr, ytr),
                     "knn_acc": tr.knn_accuracy(xtr, ytr, xval, yval), "probe_acc": tr.probe_accuracy(xtr, ytr, xval, yval, seed)})
    out = {"cuts": rows, "n_train": int(len(idx)), "leep": None, "nce": None}
    if backbone.class_names:  # the source head is still there: score its predictions on the target
        scored = data.train.subset(idx)
        last = take(cache.states(backbone, key, "train", data.train, backbone.n_blocks).inputs, torch.as_tensor(idx)) \
            if backbone.n_blocks in held else FeatureCache(cache.batch_size, cache.device).states(
                backbone, key, "scored", scored, backbone.n_blocks).inputs  # this measure's own, then dropped
        with torch.no_grad():
            probs = torch.softmax(backbone.eval().head(last).float(), 1).numpy()
        out["leep"], out["nce"] = tr.leep(probs, ytr), tr.nce(probs, ytr)
    if data.source is not None:
        xs = _pooled_at(cache, backbone, key, "source", data.source, backbone.n_blocks)
        xt = _pooled_at(cache, backbone, key, "train", data.train, backbone.n_blocks)
        out["a_distance"] = tr.a_distance(xs, xt, seed)
    out["seconds"] = time.perf_counter() - t0
    return out


def _pooled_at(cache: FeatureCache, backbone: Backbone, key: str, split_key: str, split, k: int) -> np.ndarray:
    if cache.holds(backbone, key, split, k):
        return pooled(cache.states(backbone, key, split_key, split, k).inputs)
    return pooled_pass(backbone, split, [k], cache.batch_size, cache.device)[k]


@register
class Profile(Measurement):
    name = "profile"
    profile = True

    def measure(self, pf: Preflight) -> dict:  # reads every cut: the cached ones, the others streamed
        return profile(pf.backbone, pf.data, pf.cache, pf.key)
