"""Which layers transfer: the profile's scores against the measured freeze-depth accuracies, and what moved."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from transferlab.analysis.gain import size_key, trained
from transferlab.analysis.transferability import kendall_tau

SCORES = ("logme", "hscore", "knn_acc", "probe_acc")


def score_validation(profile: dict | None, depth_rows: list[dict]) -> dict | None:
    """Kendall tau between each per-cut score and freeze_k's validation accuracy at that cut (largest size)."""
    from transferlab.analysis.sweep import main_series

    depth_rows = main_series(depth_rows)
    if not profile or not depth_rows:
        return None
    size = max({d["n_train"] for d in depth_rows}, key=size_key)
    acc = {d["k"]: d["val_acc"]["mean"] for d in depth_rows if d["n_train"] == size}
    cuts = [c for c in profile["cuts"] if c["k"] in acc]
    taus = {s: kendall_tau([c[s] for c in cuts], [acc[c["k"]] for c in cuts]) for s in SCORES}
    return {"n_train": size, "depths": [c["k"] for c in cuts], "kendall_tau": taus}


def moved(records) -> list[dict]:
    """Mean weight change and CKA per block, per strategy, at the largest target size."""
    recs = [r for r in trained(records) if r.moved]
    if not recs:
        return []
    size = max({r.n_train for r in recs}, key=size_key)
    acc = defaultdict(lambda: defaultdict(list))
    for r in recs:
        if r.n_train == size:
            for m in r.moved:
                acc[r.label][m["block"]].append((m["weight_change"], m["cka"]))
    return [{"label": lab, "n_train": size,
             "blocks": [{"block": b, "weight_change": float(np.mean([v[0] for v in vals])),
                         "cka": float(np.nanmean([v[1] for v in vals]))} for b, vals in blocks.items()]}
            for lab, blocks in acc.items()]


def splice_curves(layers: dict | None) -> dict | None:
    """Mean test accuracy and CI per (curve, n) of a ``layers.json``."""
    if not layers:
        return None
    from transferlab.analysis.stats import mean_ci

    groups = defaultdict(list)
    for r in layers["records"]:
        if r.get("test_acc") is not None:
            groups[(r["curve"], r["n"])].append(r["test_acc"])
    curves = defaultdict(list)
    for (curve, n), accs in sorted(groups.items(), key=lambda kv: kv[0][1]):
        curves[curve].append({"n": n, "test_acc": mean_ci(accs)})
    return {"n_train": layers["n_train"], "blocks": layers["blocks"], "curves": dict(curves)}
