"""The smallest network decided equivalent to the best: known answers on synthetic records (no training)."""
from __future__ import annotations

from transferlab.analysis import analyze
from transferlab.analysis.stats import Design

BLOCKS = ["b1", "b2", "b3"]
BLOCK_PARAMS = [1_000, 9_000, 90_000]


def _record(label, seed, val, test, total, infer_ms=0.1):
    strategy, _, rest = label.partition("(")
    params = {}
    for pair in filter(None, rest.rstrip(")").split(",")):
        k, v = (x.strip() for x in pair.split("="))
        params[k] = True if v == "True" else int(v)
    return {"trial_id": f"{label}-20-{seed}", "strategy": strategy, "label": label, "params": params, "seed": seed,
            "n_train": 20, "n_train_total": 100, "status": "ok", "test_acc": test, "best_val_acc": val,
            "holdout_acc": val, "trainable_params": total, "total_params": total, "infer_ms": infer_ms,
            "wall_s": 1.0, "history": []}


def _study():
    return {"design": Design(looks=(10,), margin=0.01).to_dict(), "data": {"class_names": list("abcde")},
            "model": {"blocks": BLOCKS, "block_params": BLOCK_PARAMS},
            "keep_axes": {"truncate": "n", "linear_probe": "cut"}, "depth_axes": {"freeze_k": "k"}}


def _records(n1_test=0.60):
    recs = []
    for s in range(10):
        wiggle = 0.001 * (s % 2)
        recs += [_record("scratch", s, 0.70 + wiggle, 0.70, 100_500),
                 _record("freeze_k(k=0)", s, 0.900 + wiggle, 0.90, 100_500, 0.3),
                 _record("truncate(n=3, tune=True)", s, 0.899 + wiggle, 0.90, 100_500, 0.3),
                 # two blocks kept: equal to the leader within 0.1 pp on validation
                 _record("truncate(n=2, tune=True)", s, 0.899 + 0.001 * ((s + 1) % 2), 0.895, 10_500, 0.05),
                 # one block kept: clearly worse on validation, however it scores on test
                 _record("truncate(n=1, tune=True)", s, 0.60 + wiggle, n1_test, 1_500, 0.01)]
    return recs


def test_the_smallest_network_decided_equivalent_on_validation_is_named_with_its_blocks_and_size():
    keep = analyze(_records(), _study()).keep
    (row,) = keep.smallest
    assert row.leader == "freeze_k(k=0)" and row.label == "truncate(n=2, tune=True)"
    assert row.kept == 2 and row.params == 10_500
    text = row.text
    for words in ("keeps blocks 1-2 (b1, b2) and removes 3 (b3)", "10% of the parameters (10.5k of 100.5k)",
                  "0.05 ms per example against 0.3 ms", "decided within ±1 pp of the best of the others (the leader is freeze_k(k=0)",
                  "89.5% against 90.0%", "measurably better than scratch"):
        assert words in text, (words, text)
    assert keep.body_params == [1_000, 10_000, 100_000]
    series = {(p.series, p.k) for p in keep.curves}
    assert ("truncate(tune=True)", 1) in series and ("freeze_k", 0) in series


def test_the_test_split_never_chooses_the_smaller_network():
    """The one-block network scores best on test, but it is worse on validation: it is not the answer."""
    keep = analyze(_records(n1_test=0.99), _study()).keep
    assert keep.smallest[0].label == "truncate(n=2, tune=True)"


def test_no_smaller_network_is_claimed_when_none_is_decided_equivalent():
    recs = [r for r in _records() if not r["label"].startswith("truncate(n=2")]
    keep = analyze(recs, _study()).keep
    (row,) = keep.smallest
    assert row.label is None and "none smaller than the leader, freeze_k(k=0)" in row.text


def test_a_study_that_removes_nothing_has_no_keep_section():
    study = {**_study(), "keep_axes": {}}
    assert analyze(_records(), study).keep is None
