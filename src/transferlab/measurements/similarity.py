"""How relevant the source features are to the target, measured on validation only.

A linear probe on the pretrained features is compared with the same probe on
the features of the re-initialised architecture.  Pretrained features that
separate the target classes much better than random ones mean the source
learned something the target can use ("high similarity" in the CS231n table).
"""
from __future__ import annotations

import torch

from transferlab.backbones.base import Backbone
from transferlab.cache import FeatureCache
from transferlab.data.base import TargetData
from transferlab.measurements import Measurement, Preflight, register
from transferlab.strategies.probe import as_matrix, make_classifier, score

MARGIN = 0.05  # pretrained features beat random ones by this much validation accuracy ...
ERROR_RATIO = 0.5  # ... or make at most this share of their errors (random CNN features of a simple target can
# already reach 90%: a source that then halves the remaining error has learned what the target needs)


def probe_val_acc(backbone: Backbone, data: TargetData, seed: int = 0, cache: FeatureCache | None = None,
                  key: str = "m", rows=None) -> float:
    """``rows``: the training pool's rows to fit on (all by default); from a given ``cache``, the pool's activations
    (the pass the trials reuse), else only those rows' own."""
    k = backbone.n_blocks
    if cache is None:
        train = data.train if rows is None else data.train.subset(torch.as_tensor(rows))
        cache, rows = FeatureCache(), None
    else:
        train = data.train
    states = cache.states(backbone, key, "train", train, k)
    x, y = as_matrix(states if rows is None else states.subset(torch.as_tensor(rows)))
    xv, yv = as_matrix(cache.states(backbone, key, "val", data.val, k))
    pipe = make_classifier("logreg", 1.0, seed).fit(x, y)
    return score(pipe, xv, yv, data.n_classes)[1]


def feature_relevance(pretrained: Backbone, data: TargetData, seed: int = 0, cache: FeatureCache | None = None,
                      key: str = "m") -> dict:
    """``cache``/``key``: the study's, so the pretrained features come from the pass the trials use.  Both probes fit
    on the rows the profile scores (at most ``profile.MAX_ROWS``, stratified), so a big pool costs the re-initialised
    copy one pass over those rows, not over the pool."""
    from transferlab.measurements.profile import MAX_ROWS, scored_rows

    rows = scored_rows(data.train.y.numpy(), MAX_ROWS, seed)
    pre = probe_val_acc(pretrained, data, seed, cache, key, rows)
    torch.manual_seed(seed)
    rnd = probe_val_acc(pretrained.clone().reinit(), data, seed, rows=rows)
    level = "high" if pre >= rnd + MARGIN or (1 - pre) <= ERROR_RATIO * (1 - rnd) else "low"
    return {"method": "probe_vs_random_features", "pretrained_val_acc": pre, "random_val_acc": rnd, "level": level,
            "summary": f"a linear probe on the pretrained features reaches {100 * pre:.1f}% validation accuracy vs "
                       f"{100 * rnd:.1f}% on re-initialised features"}


@register
class FeatureRelevance(Measurement):
    name = "similarity"

    def cuts(self, backbone):
        return [backbone.n_blocks]

    def measure(self, pf: Preflight) -> dict:
        return feature_relevance(pf.backbone, pf.data, cache=pf.cache, key=pf.key)
