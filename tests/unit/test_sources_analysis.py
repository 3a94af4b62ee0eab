"""The source comparison and the depth series as pure functions of records (no torch, no training)."""
from __future__ import annotations

import numpy as np

from transferlab.analysis.sources import compare_sources
from transferlab.analysis.stats import Design
from transferlab.analysis.sweep import depth_profile, depth_series, main_series


def _rec(label, strategy, seed, val, test, n=20, params=None):
    return {"trial_id": f"{label}-{seed}-{n}", "label": label, "strategy": strategy, "params": params or {}, "seed": seed,
            "n_train": n, "n_train_total": 5 * n, "status": "ok", "test_acc": test, "best_val_acc": val,
            "trainable_params": 100, "frozen_blocks": 0, "wall_s": 1.0, "history": []}


def _sentences(text: str) -> int:
    """Sentences in a recommendation: a full stop, or a colon's list, ends one only before a space and a capital."""
    import re

    return len(re.findall(r"[.!?](?=\s+[A-Z]|$)", text.strip()))


def _source(name, group, params, shift, seeds=10, noise=0.002, rng=None):
    rng = rng or np.random.default_rng(0)
    recs = []
    for s in range(seeds):
        recs.append(_rec("scratch", "scratch", s, 0.80 + rng.normal(0, 0.01), 0.80 + rng.normal(0, 0.01)))
        base = 0.90 + rng.normal(0, 0.01)
        recs.append(_rec("head", "head", s, base + shift + rng.normal(0, noise), base + shift + rng.normal(0, noise)))
        recs.append(_rec("finetune", "finetune", s, base + shift - 0.05, base + shift - 0.05))
    return {"name": name, "folder": name, "spec": name, "scratch_group": group, "arch": name, "model_params": params,
            "study": {}, "records": recs}


def test_an_equivalent_smaller_source_is_preferred_and_test_is_only_reported():
    rng = np.random.default_rng(1)
    big = _source("big", "g1", 10_000_000, 0.0, rng=rng)
    rng = np.random.default_rng(1)  # the same per-seed draws: the two sources differ by a tiny shift
    small = _source("small", "g2", 1_000_000, -0.001, rng=rng)
    c = compare_sources([big, small], Design(looks=(10,), seed_order=tuple(range(10))))
    r = c.rankings[-1]
    assert r.leader == "big"
    small_row = next(x for x in r.contestants if x.name == "small")
    assert small_row.vs_leader_val.verdict == "equivalent"
    assert c.recommendation["source"] == "small" and "smaller model" in c.recommendation["text"]
    assert c.recommendation["label"] == "head"
    # What was decided leads, in at most three sentences: the choice, the sources decided against the leader, the
    # gain over its own scratch; what is undecided is in the ranking table.
    text = c.recommendation["text"]
    assert _sentences(text) <= 3 and "is worse" in text and "gains" in text, text
    scratch = [x for x in r.contestants if x.is_scratch]
    assert len(scratch) == 2 and all(x.vs_leader_test.verdict == "worse" for x in scratch)


def test_an_equivalent_source_of_the_same_size_does_not_displace_the_leader():
    """Only a smaller model displaces the leader: an equivalent one of the same size does not, and the text never
    calls a model of the same size 'the smaller model'."""
    rng = np.random.default_rng(1)
    first = _source("first", "g1", 1_000_000, 0.0, rng=rng)
    rng = np.random.default_rng(1)
    second = _source("second", "g2", 1_000_000, -0.001, rng=rng)
    c = compare_sources([first, second], Design(looks=(10,), seed_order=tuple(range(10))))
    assert c.recommendation["source"] == c.rankings[-1].leader and "smaller model" not in c.recommendation["text"]


def test_scratch_leading_on_validation_recommends_no_pretrained_model():
    rng = np.random.default_rng(2)
    src = _source("weak", "g", 1000, -0.2, rng=rng)
    other = _source("weaker", "g", 1000, -0.25, rng=np.random.default_rng(3))
    c = compare_sources([src, other], Design(looks=(10,), seed_order=tuple(range(10))))
    assert c.rankings[-1].leader == "none: scratch"  # one shared control: one "none" row
    assert c.recommendation["source"] is None and c.recommendation["text"].startswith("Use none")
    assert _sentences(c.recommendation["text"]) <= 3, c.recommendation["text"]


def test_a_source_that_stopped_at_fewer_seeds_still_leads_when_it_is_better():
    """Fault: source A's head at 99.0% over 3 seeds (decided early) lost the lead to B's 93.1% over 10 seeds,
    because only configurations with the most seeds could lead."""
    def source(name, group, head_val, head_test, seeds):
        recs = []
        for s in range(10):
            recs.append(_rec("scratch", "scratch", s, 0.80 + 0.001 * (s % 3), 0.80 + 0.001 * (s % 3)))
            if s < seeds:
                recs.append(_rec("head", "head", s, head_val + 0.001 * (s % 2), head_test + 0.001 * (s % 2)))
        return {"name": name, "folder": name, "spec": name, "scratch_group": group, "arch": name,
                "model_params": 1000, "study": {}, "records": recs}

    a, b = source("A", "g1", 0.990, 0.98, seeds=3), source("B", "g2", 0.931, 0.92, seeds=10)
    c = compare_sources([b, a], Design(looks=(3, 6, 10), seed_order=tuple(range(10))))
    r = c.rankings[-1]
    assert r.leader == "A" and c.recommendation["source"] == "A", c.recommendation["text"]
    assert _sentences(c.recommendation["text"]) <= 3, c.recommendation["text"]
    b_row = next(x for x in r.contestants if x.name == "B")
    assert b_row.vs_leader_val.n == 3, "compared on the seeds both ran"
    assert b_row.vs_leader_val.verdict in ("worse", "inconclusive") and b_row.vs_leader_val.mean < 0


def test_depth_series_keep_configurations_apart():
    assert depth_series("freeze_k(k=2, train_bn=True)", "freeze_k", "k") == "freeze_k(train_bn=True)"
    assert depth_series("freeze_k(k=2)", "freeze_k", "k") == "freeze_k"
    assert depth_series("surgical(block=1)", "surgical", "block") == "surgical"
    iv = {"mean": 0.5, "lo": 0.4, "hi": 0.6, "sd": 0.1, "n": 3}
    rows = [{"label": lab, "strategy": s, "params": p, "n_train": 5, "test_acc": iv, "val_acc": iv}
            for lab, s, p in [("freeze_k(k=0)", "freeze_k", {"k": 0, "train_bn": False}),
                              ("freeze_k(k=1)", "freeze_k", {"k": 1, "train_bn": False}),
                              ("freeze_k(k=1, train_bn=True)", "freeze_k", {"k": 1, "train_bn": True}),
                              ("surgical(block=0)", "surgical", {"block": 0})]]
    depth = depth_profile(rows, {"freeze_k": "k", "surgical": "block"})
    assert {(d["series"], d["k"]) for d in depth} == {("freeze_k", 0), ("freeze_k", 1), ("freeze_k(train_bn=True)", 1),
                                                      ("surgical", 0)}
    assert {d["series"] for d in main_series(depth)} == {"freeze_k"}


def test_the_ranking_family_counts_every_configuration_chosen_among():
    """Each source's contestant is its best of K configurations, chosen on the numbers that rank it: the family is
    every pair of (source, configuration) and scratch control, so expanding a source into more configurations does
    not buy it narrower intervals (before, the family counted only the contestants)."""
    big = _source("big", "g1", 1000, 0.0)
    for k in range(4):  # four more configurations of "big": six in all
        big["records"] += [{**r, "label": f"extra{k}", "strategy": "head", "trial_id": f"{r['trial_id']}-x{k}"}
                           for r in big["records"] if r["label"] == "finetune"]
    small = _source("small", "g2", 1000, -0.01)
    r = compare_sources([big, small], Design(looks=(10,), seed_order=tuple(range(10)))).rankings[-1]
    m = 6 + 2 + 2  # big's six configurations, small's two, two scratch controls
    assert all(x.vs_leader_val.family == m * (m - 1) // 2 for x in r.contestants if x.vs_leader_val)
