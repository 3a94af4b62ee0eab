"""Equivalences that must hold exactly (or to float tolerance)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import prepared
from tests.helpers import assert_same_trial
from transferlab.cache import FeatureCache
from transferlab.results import TrialSpec
from transferlab.fitloop import Hook
from transferlab.trial import run_trial


def _strip(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_freeze_0_equals_finetune_with_body_mult_1(model, request, digits, tiny_budget):
    bb = request.getfixturevalue(model)
    data = prepared(bb, digits)
    a = run_trial(TrialSpec("freeze_k", {"k": 0, "train_bn": False}, 1, 5), bb, "k", data, tiny_budget)
    b = run_trial(TrialSpec("finetune", {"body_lr_mult": 1.0, "layer_decay": 1.0}, 1, 5), bb, "k", data, tiny_budget)
    assert a.test_acc == b.test_acc
    assert _strip(a.history) == _strip(b.history)


def test_scratch_reinitialises_every_parameter(cnn, digits, tiny_budget):
    kept = []
    run_trial(TrialSpec("scratch", {}, 0, 5), cnn, "k", prepared(cnn, digits), tiny_budget, keep=kept)
    pre = dict(cnn.named_parameters())
    for name, p in kept[0].model.named_parameters():
        if name.startswith("head"):
            continue
        assert not torch.equal(p.detach(), pre[name].detach()), f"scratch kept pretrained {name}"
    fresh = cnn.clone().reinit()
    for name, p in fresh.named_parameters():
        assert not torch.equal(p, pre[name]), f"reinit left {name} as it was"


@pytest.mark.parametrize("strategy,params", [("head", {"depth": 2, "hidden": 32, "dropout": 0.0}),
                                             ("freeze_k", {"k": 2, "train_bn": False}),
                                             ("linear_probe", {"kind": "logreg", "cut": None, "Cs": None}),
                                             ("lp_ft", {"body_lr_mult": 1.0, "probe_C": 1.0}),
                                             # earlier cuts: the pooled cut-k features, cached exactly
                                             ("truncate", {"n": 2, "tune": False}),
                                             ("linear_probe", {"kind": "logreg", "cut": 2, "Cs": None}),
                                             ("head", {"depth": 2, "hidden": 32, "dropout": 0.0, "cut": 1})])
@pytest.mark.parametrize("augmented", [False, True], ids=["plain", "augmented"])
def test_cached_equals_uncached(strategy, params, augmented, cnn, digits, tiny_budget):
    """With augmentation the frozen prefix is cached per view (tests/oracles/test_augmentation.py)."""
    from dataclasses import replace

    from transferlab.data.augment import Augmentation

    data = prepared(cnn, digits)
    if augmented:
        data = replace(data, augment=Augmentation(("crop", "flip"), views=3))
    with_cache, without = _with_and_without_cache(TrialSpec(strategy, params, 3, 20), cnn, data, tiny_budget)
    if strategy != "lp_ft":
        assert with_cache.cached and not without.cached


def _with_and_without_cache(spec, backbone, data, budget):
    """The same trial with every cut cached and uncached, checked equal; both records."""
    cache = FeatureCache()
    cache.want(range(1, backbone.n_blocks + 1))
    with_cache = run_trial(spec, backbone, "k", data, budget, cache=cache)
    without = run_trial(spec, backbone, "k", data, budget, cache=None)
    assert_same_trial(with_cache, without)
    return with_cache, without


@pytest.mark.parametrize("strategy,params", [("freeze_k", {"k": 2, "train_bn": False}),
                                             ("linear_probe", {"kind": "logreg", "cut": None, "Cs": None})])
def test_per_seed_splits_never_share_cached_features_across_seeds(strategy, params, cnn, digits, tiny_budget):
    """Two seeds through one cache equal each seed run without a cache: seed 4's validation, held-out and test
    features are its own, not seed 3's under the same key."""
    from transferlab.data.base import hold_out, resplit

    data = resplit(prepared(cnn, hold_out(digits)), "per_seed")
    cache = FeatureCache()
    cache.want(range(1, cnn.n_blocks + 1))
    for seed in (3, 4):
        spec = TrialSpec(strategy, params, seed, 20)
        with_cache = run_trial(spec, cnn, "k", data, tiny_budget, cache=cache)
        assert_same_trial(with_cache, run_trial(spec, cnn, "k", data, tiny_budget, cache=None))
        assert with_cache.cached and with_cache.holdout_acc is not None
    split_keys = {key[1] for key in cache._mem}
    assert "held" in split_keys and not any("@" in k for k in split_keys), "the pool's features, once for every seed"


def test_adapting_batchnorm_in_the_prefix_is_never_cached(cnn, digits, tiny_budget):
    # freeze_k(train_bn=True) changes the prefix's activations as it trains: a cached result would be wrong.
    data = prepared(cnn, digits)
    spec = TrialSpec("freeze_k", {"k": 2, "train_bn": True}, 1, 20)
    cache = FeatureCache()
    cache.want(range(1, cnn.n_blocks + 1))
    with_cache = run_trial(spec, cnn, "k", data, tiny_budget, cache=cache)
    without = run_trial(spec, cnn, "k", data, tiny_budget, cache=None)
    assert not with_cache.cached
    assert with_cache.test_acc == without.test_acc
    assert _strip(with_cache.history) == _strip(without.history)


def test_cache_features_equal_forward_pass(cnn, digits):
    data = prepared(cnn, digits)
    cache = FeatureCache(batch_size=64)
    cache.want([1, 2, 3])
    cnn.eval()
    for k in (1, 2, 3):
        got = cache.states(cnn, "m", "val", data.val, k).inputs
        with torch.no_grad():
            want = cnn.features(data.val.inputs, k)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert cache.passes == 1, "one pass must yield every wanted cut"


class _Clock(Hook):
    def __init__(self):
        self.times = []

    def on_period_end(self, log):
        import time

        self.times.append(time.perf_counter())


@pytest.mark.parametrize("strategy,params", [("scratch", {}), ("finetune", {"body_lr_mult": 0.1, "layer_decay": 1.0})])
def test_test_split_read_once_after_all_training(strategy, params, cnn, digits, tiny_budget):
    data = prepared(cnn, digits)
    clock = _Clock()
    spec = TrialSpec(strategy, params, 0, 5)
    rec = run_trial(spec, cnn, "k", data, tiny_budget, hooks=(clock,))
    assert rec.status == "ok", rec.error
    scored = [(t, reason) for t, reason in data.test.log if not reason.startswith("check:")]
    assert [reason for _, reason in scored] == [spec.trial_id]
    assert {reason for _, reason in data.test.log} - {spec.trial_id} <= {"check:preprocess"}
    opened_at = scored[0][0]
    assert len(clock.times) >= len(tiny_budget.lrs), "every candidate trained"
    assert max(clock.times) < opened_at, "the test split was read before training ended"
    assert rec.chosen["lr"] in [c["lr"] for c in rec.candidates], "chosen among the trained (grid extended or not)"


def test_lpft_head_equals_the_probe(cnn, digits):
    from sklearn.linear_model import LogisticRegression  # noqa: F401

    from transferlab.strategies.lpft import fold_probe
    from transferlab.strategies.probe import make_classifier

    rng = np.random.default_rng(0)
    for n_classes in (2, 4):
        x = rng.normal(size=(60, 7)) * rng.uniform(0.5, 3, size=7) + 2
        y = np.arange(60) % n_classes
        pipe = make_classifier("logreg", 1.0, 0).fit(x, y)
        w, b = fold_probe(pipe, n_classes)
        logits = x @ w.T + b
        np.testing.assert_array_equal(logits.argmax(1), pipe.predict(x))
        probs = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), pipe.predict_proba(x), rtol=1e-6, atol=1e-8)


def test_candidates_train_independently_without_halving(mlp, digits):
    from transferlab.training import Budget

    data = prepared(mlp, digits)
    both = run_trial(TrialSpec("finetune", {"body_lr_mult": 0.1, "layer_decay": 1.0}, 2, 5), mlp, "k", data,
                     Budget(epochs=4, patience=4, batch_size=16, lrs=(1e-3, 1e-2)))
    alone = run_trial(TrialSpec("finetune", {"body_lr_mult": 0.1, "layer_decay": 1.0}, 2, 5), mlp, "k", data,
                      Budget(epochs=4, patience=4, batch_size=16, lrs=(both.chosen["lr"],)))
    assert _strip(both.history) == _strip(alone.history) and both.test_acc == alone.test_acc


def test_halving_prunes_candidates_without_changing_the_survivor(mlp, digits):
    from transferlab.training import Budget

    data = prepared(mlp, digits)
    # 100 examples at batch 16: 7 steps a pass, 56 steps, an evaluation every 7; no extension past the budget.
    budget = Budget(epochs=8, patience=8, extend=1, grid_extensions=0, batch_size=16, lrs=(1e-3, 3e-3, 1e-2))
    spec = TrialSpec("finetune", {"body_lr_mult": 0.1, "layer_decay": 1.0}, 0, 20)
    halved = run_trial(spec, mlp, "k", data, budget, halving=True)
    full = run_trial(spec, mlp, "k", data, budget, halving=False)
    assert halved.status == full.status == "ok"
    assert halved.steps_run < full.steps_run, (halved.steps_run, full.steps_run)
    assert sorted(c["steps"] for c in halved.candidates) == [14, 28, 56]
    # The survivor trained exactly as it would have alone: pruning only stops the others early.
    alone = run_trial(spec, mlp, "k", data, replace(budget, lrs=(halved.chosen["lr"],)))
    assert _strip(halved.history) == _strip(alone.history) and halved.test_acc == alone.test_acc


def test_lpft_fine_tunes_past_its_probe(cnn, digits, tiny_budget):
    rec = run_trial(TrialSpec("lp_ft", {"body_lr_mult": 1.0, "probe_C": 1.0}, 0, 5), cnn, "k", prepared(cnn, digits),
                    tiny_budget)
    assert rec.status == "ok" and rec.history[0]["step"] == 0, "step 0 (the probe) is on the curve"
    assert rec.best_step >= 1, "the checkpoint is a fine-tuned step, never the probe itself"


def _depthwise_cnn():
    """A small CNN with a depthwise convolution in its middle block: on the CPU the whole network trains and is
    cached in channels_last (accel.channels_last), the plain blocks before and after it too."""
    from torch import nn

    from transferlab.backbones.base import Backbone, Preprocessing

    torch.manual_seed(0)
    blocks = [("conv1", nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())),
              ("dw", nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.MaxPool2d(2))),
              ("conv3", nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten()))]
    pre = Preprocessing(kind="image", mean=(0.3,), std=(0.4,), input_shape=(1, 8, 8))
    return Backbone(blocks, nn.Linear(16, 5), torch.zeros(2, 1, 8, 8), pre, [str(c) for c in range(5)],
                    spec={"source": "test:depthwise"})


@pytest.mark.parametrize("strategy,params", [("freeze_k", {"k": 1, "train_bn": False}),
                                             # the depthwise block frozen: the plain suffix goes by the network
                                             ("freeze_k", {"k": 2, "train_bn": False}),
                                             ("head", {"depth": 2, "hidden": 32, "dropout": 0.0}),
                                             ("truncate", {"n": 1, "tune": False})])
def test_cached_equals_uncached_in_channels_last(strategy, params, digits, tiny_budget):
    """The layout a depthwise CNN trains in on the CPU is the cache's too, so caching still changes nothing; and
    the shared pretrained model keeps its layout (the cache works on a copy)."""
    from transferlab.accel import channels_last

    bb = _depthwise_cnn()
    assert channels_last(bb, "cpu") and channels_last(bb.suffix(2), "cpu")
    strides = {name: p.stride() for name, p in bb.named_parameters()}
    data = prepared(bb, digits)
    with_cache, without = _with_and_without_cache(TrialSpec(strategy, params, 3, 20), bb, data, tiny_budget)
    assert with_cache.cached and not without.cached
    assert {name: p.stride() for name, p in bb.named_parameters()} == strides, "the shared model changed layout"
    assert bb.blocks["conv3"][0].weight.stride() != bb.blocks["conv3"][0].weight.contiguous(
        memory_format=torch.channels_last).stride(), "this check must be able to see a converted weight"
