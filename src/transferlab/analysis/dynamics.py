"""'Why does it learn slower?': dynamics of the first evaluation period of each strategy against scratch, and the flags they raise."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from transferlab.analysis.gain import SCRATCH, size_key, trained

HEAD_SLOW = 0.1  # a head moving less than this fraction of scratch's head in the first evaluation period is flagged


def first_epochs(records) -> dict:
    """label -> block -> mean (over seeds) grad norm and update ratio in the first evaluation period, at the smallest size."""
    recs = [r for r in trained(records) if r.dynamics]
    if not recs:
        return {}
    size = min({r.n_train for r in recs}, key=size_key)
    acc = defaultdict(lambda: defaultdict(list))
    for r in recs:
        if r.n_train == size:
            for d in r.dynamics:
                if d.get("period", d.get("epoch")) == 1:
                    acc[r.label][d["block"]].append((d["grad_norm"], d["update_ratio"], d.get("input_rms")))

    def summary(vals):
        row = {"grad_norm": float(np.mean([v[0] for v in vals])), "update_ratio": float(np.mean([v[1] for v in vals]))}
        if vals[0][2] is not None:
            row["input_rms"] = float(np.mean([v[2] for v in vals]))
            row["effective_step"] = row["update_ratio"] * row["input_rms"]  # how far the logits can move
        return row

    return {"n_train": size, "strategies": {lab: {b: summary(vals) for b, vals in blocks.items()}
                                            for lab, blocks in acc.items()}}


def flags(first: dict, study: dict) -> list[str]:
    out = []
    strategies = first.get("strategies", {})
    scratch_head = strategies.get(SCRATCH, {}).get("head", {}).get("effective_step")
    for lab, blocks in strategies.items():
        head = blocks.get("head", {})
        step = head.get("effective_step")
        body = [b for b in blocks if b != "head"]
        # Only a head on frozen features: the block feeding it did not move in the first period (lp_ft's head starts fitted).
        frozen_below = bool(body) and blocks[body[-1]]["update_ratio"] == 0.0
        if lab != SCRATCH and frozen_below and scratch_head and step is not None and step < HEAD_SLOW * scratch_head:
            out.append(f"{lab}: in its first evaluation period its new head's effective step (relative update x input RMS "
                       f"{head['input_rms']:.2g}) is {step:.2g}, under {HEAD_SLOW:g}x scratch's ({scratch_head:.2g}); the "
                       "head learning rate is too low for the scale of the frozen features (raise the head's learning "
                       "rate, or normalise the features).")
    bad_bn = [b for b in study.get("batchnorm") or [] if b["flag"]]
    if bad_bn:
        worst = max(bad_bn, key=lambda b: b["shift"])
        out.append(f"{len(bad_bn)} BatchNorm layers see target statistics far from their running statistics (worst: "
                   f"{worst['layer']}, mean shift {worst['shift']:.2f} sd, variance ratio {worst['var_ratio']:.2f}); frozen "
                   "blocks keep the source's statistics, so consider train_bn=True or unfreezing those blocks.")
    inputs = study.get("inputs")
    if inputs and inputs["flag"]:
        out.append(f"Target inputs have per-channel mean {np.round(inputs['mean'], 2).tolist()} and std "
                   f"{np.round(inputs['std'], 2).tolist()} after preprocessing: {inputs['message']}.")
    return out
