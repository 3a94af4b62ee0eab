"""Validation halved, and splits redrawn per seed: sizes, class balance, disjointness, and what stays fixed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transferlab.data.base import PER_SEED_BELOW, TargetData, hold_out, resplit
from transferlab.data.builtin import digits_target
from transferlab.errors import UserError


def _rows(split) -> set[bytes]:
    return {row.numpy().tobytes() for row in split.inputs}


def test_validation_is_halved_stratified_and_disjoint():
    data = digits_target(half="B")
    held = hold_out(data)
    assert len(held.val) + len(held.holdout) == len(data.val)
    assert abs(len(held.val) - len(held.holdout)) <= 1
    assert not _rows(held.val) & _rows(held.holdout)
    counts = lambda s: np.bincount(s.y.numpy(), minlength=data.n_classes)  # noqa: E731
    assert np.abs(counts(held.val) - counts(held.holdout)).max() <= 1, "stratified"
    assert hold_out(held) is held, "halved once"


def test_a_fixed_test_split_across_seeds_with_validation_redrawn():
    """The default: one test split for the whole study (so no choice ever reads a row some seed scored on test);
    each seed deals its own validation and held-out examples from their pooled rows."""
    data = resplit(hold_out(digits_target(half="B")))
    assert data.per_seed and not data.test_per_seed and not data.split_info["test_per_seed"]
    test_rows = _rows(data.test.open("x"))
    pooled = _rows(data.val) | _rows(data.holdout)
    seen_vals = []
    for seed in (0, 1, 2):
        s = data.for_seed(seed)
        assert _rows(s.test.open("x")) == test_rows and s.key("test") == "test", "one test split, one cache entry"
        assert s.key("val") == f"val@{seed}"
        assert (len(s.val), len(s.holdout)) == (len(data.val), len(data.holdout))
        assert _rows(s.val) | _rows(s.holdout) == pooled and not _rows(s.val) & test_rows
        seen_vals.append(_rows(s.val))
    assert seen_vals[0] != seen_vals[1], "another seed, other validation examples"
    assert all(r != "check:resplit" for _, r in data.test.log), "the test split is not even pooled"


def test_per_seed_splits_deal_the_same_rows_again_and_keep_the_training_pool():
    data = resplit(hold_out(digits_target(half="B")), "per_seed")
    assert data.per_seed and len(data.test) < PER_SEED_BELOW and data.split_info["per_seed"]
    pooled = _rows(data.val) | _rows(data.holdout) | _rows(data.test.open("x"))
    seen_tests = []
    for seed in (0, 1, 2):
        s = data.for_seed(seed)
        assert s is data.for_seed(seed), "dealt once per seed"
        assert s.split_tag == f"@{seed}" and s.key("val") == f"val@{seed}"
        assert (len(s.val), len(s.holdout), len(s.test)) == (len(data.val), len(data.holdout), len(data.test))
        parts = [_rows(s.val), _rows(s.holdout), _rows(s.test.open("x"))]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert parts[0] | parts[1] | parts[2] == pooled
        assert torch.equal(s.train.y, data.train.y) and s.train_indices(5, seed).tolist() == data.train_indices(5, seed).tolist()
        assert np.array_equal(np.bincount(s.test.open("x").y.numpy()), np.bincount(data.test.open("x").y.numpy()))
        seen_tests.append(parts[2])
    assert seen_tests[0] != seen_tests[1], "another seed, other test examples"
    assert data.test.log[0][1] == "check:resplit" and all(r == "x" for _, r in data.test.log[1:]), \
        "the pool is dealt from one read, before any trial"


def test_fixed_and_given_splits_stay_fixed():
    data = hold_out(digits_target(half="B"))
    fixed = resplit(data, "fixed")
    assert not fixed.per_seed and fixed.for_seed(3) is fixed and fixed.key("val") == "val"
    given = TargetData(data.name, data.class_names, data.train, data.val, data.test, {"method": "given"})
    assert not resplit(given).per_seed, "a split the data gives is the user's benchmark: not redrawn by default"
    with pytest.raises(UserError, match="per-seed splits would redraw.*--splits fixed"):
        resplit(given, "per_seed")


def test_an_image_folder_made_into_splits_here_is_dealt_per_seed_on_its_storage(tmp_path):
    """Images held as bytes join on their one storage: no pixels copied, the same rows dealt per seed."""
    from PIL import Image

    from transferlab.data.images import image_target

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(30):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    data = resplit(hold_out(image_target(str(tmp_path), size=(8, 8), storage="memory")), "per_seed")
    assert data.per_seed
    s = data.for_seed(1)
    rows = lambda split: {bytes(split.inputs.raw(np.arange(len(split)))[i].numpy().tobytes()) for i in range(len(split))}  # noqa: E731
    pooled = rows(data.val) | rows(data.holdout) | rows(data.test.open("x"))
    assert rows(s.val) | rows(s.holdout) | rows(s.test.open("x")) == pooled
    assert not rows(s.val) & rows(s.test.open("x"))


def test_a_study_of_one_split_mode_is_not_resumed_in_another(tmp_path):
    """A folder whose seeds redrew test (schema 4's per-seed splits) must not gain trials scored on one fixed test
    split: a schema-4 study reads as having redrawn test, and resuming it in the other mode is refused in one line."""
    import json

    from transferlab.pipeline import check_folder
    from transferlab.results import SCHEMA_VERSION, check_schema

    old = check_schema({"schema": 4, "data": {"splits": {"per_seed": True}}}, "x")
    assert old["schema"] == SCHEMA_VERSION and old["data"]["splits"]["test_per_seed"] is True
    (tmp_path / "study.json").write_text(json.dumps({"schema": 4, "model_key": "m", "data_key": "d", "config": {},
                                                     "data": {"splits": {"per_seed": True}}}))
    with pytest.raises(UserError, match="test split was redrawn per seed.*--splits per_seed"):
        check_folder(tmp_path, "m", "d", None, test_per_seed=False)
    check_folder(tmp_path, "m", "d", None, test_per_seed=True)  # the same mode resumes
    check_folder(tmp_path, "m", "d", None)  # the layers command keeps its own fixed splits beside a study
