"""Augmentation is the same for every strategy: frozen ones read cached views of the very inputs scratch sees."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import prepared
from transferlab.cache import FeatureCache
from transferlab.data.augment import Augmentation
from transferlab.results import TrialSpec
from transferlab.strategies.base import TrialContext
from transferlab.trial import run_trial

AUG = Augmentation(("crop", "flip"), views=3, seed=0)


def _augmented(bb, digits, aug=AUG):
    return replace(prepared(bb, digits), augment=aug)


@pytest.mark.parametrize("kinds", [("crop", "flip"), ("resized_crop", "flip")])
def test_frozen_and_scratch_draw_their_inputs_from_the_same_views(cnn, digits, tiny_budget, kinds):
    data = _augmented(cnn, digits, Augmentation(kinds, views=3, seed=0))
    idx = data.train_indices(20, 0)
    cache = FeatureCache()
    cache.want(range(1, cnn.n_blocks + 1))
    ctx = TrialContext(cnn, "k", data, idx, 0, tiny_budget, cache)
    raw, frozen = ctx.train_views(0), ctx.train_views(2)  # what scratch reads, what freeze_k(2) reads
    g = torch.Generator().manual_seed(0)
    rows = torch.randperm(len(idx), generator=g)[:16]
    view = torch.randint(AUG.views, (16,), generator=g)
    cnn.eval()
    with torch.no_grad():
        through_prefix = cnn.features(raw.batch(rows, view), 2)
    torch.testing.assert_close(frozen.batch(rows, view), through_prefix, rtol=1e-5, atol=1e-6)
    assert cache.passes == data.augment.views, "one prefix pass per view, yielding every cut"


def test_augmentation_draws_per_example_not_per_batch(digits):
    x = torch.ones(1, 1, 8, 8).repeat(64, 1, 1, 1)
    x[:, :, :4] = 0.0  # top half dark: a vertical shift moves the edge
    t = Augmentation(("crop",), views=1).table(64)
    out = Augmentation(("crop",), views=1).apply(x, t["flip"][0], t["shift"][0])
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 4, "one random offset for the whole batch"


def test_augmentation_changes_what_a_frozen_strategy_trains_on(cnn, digits, tiny_budget):
    spec = TrialSpec("freeze_k", {"k": 3, "train_bn": False}, 0, 20)
    plain = run_trial(spec, cnn, "k", prepared(cnn, digits), tiny_budget)
    augmented = run_trial(spec, cnn, "k", _augmented(cnn, digits), tiny_budget)
    assert not np.isclose(plain.history[0]["train_loss"], augmented.history[0]["train_loss"]), \
        "a frozen strategy silently skipped the augmentation"


def test_resized_crop_draws_torchvision_boxes_per_example_and_view():
    aug = Augmentation(("resized_crop",), views=2, seed=0)
    box = aug.table(50, (8, 8))["box"]
    assert torch.equal(box, Augmentation(("resized_crop",), views=2, seed=0).table(50, (8, 8))["box"]), "not reproducible"
    area = box[..., 2] * box[..., 3]
    assert len({tuple(b) for b in box.reshape(-1, 4).tolist()}) > 20 and (area >= 1).all() and (area <= 64).all()
    assert ((box[..., 0] + box[..., 2]) <= 8).all() and ((box[..., 1] + box[..., 3]) <= 8).all(), "box outside the image"
    x = torch.rand(50, 1, 8, 8)
    out = aug.apply(x, *aug.draws(aug.table(50, (8, 8)), torch.zeros(50, dtype=torch.long), torch.arange(50)))
    assert out.shape == x.shape and not torch.equal(out, x)


def test_crop_and_resized_crop_are_one_or_the_other():
    from transferlab.data.augment import parse_kinds
    from transferlab.errors import UserError

    with pytest.raises(UserError, match="choose one"):
        parse_kinds("crop,resized_crop")
    assert parse_kinds("flip,resized_crop") == ("resized_crop", "flip")
