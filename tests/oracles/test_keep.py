"""Which layers to keep: probes, heads and truncated networks at every cut (seed 004).

Oracles: the strategies at the last cut are today's strategies; a truncated network that keeps everything and
tunes it is freeze_k(k=0); the cached cut-k features, pooled, are the truncated network's own forward pass; the
saved truncated winner is the smaller network, and predict runs it. (Cached = uncached at an earlier cut:
tests/oracles/test_oracles.py, test_cached_equals_uncached.)"""
from __future__ import annotations

import pytest
import torch

from tests.conftest import prepared
from transferlab.backbones.base import pool_state
from transferlab.cache import FeatureCache
from transferlab.results import TrialSpec
from transferlab.strategies.base import PlanContext, from_spec
from transferlab.trial import run_trial


def _strip(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _same_result(a, b):
    assert a.status == b.status == "ok"
    assert a.test_acc == b.test_acc and a.best_val_acc == b.best_val_acc
    assert _strip(a.history) == _strip(b.history)


@pytest.mark.parametrize("name,params", [("linear_probe", {"kind": "logreg", "Cs": None}),
                                         ("head", {"depth": 2, "hidden": 32, "dropout": 0.0})])
def test_a_probe_or_head_at_the_last_cut_is_todays_strategy(name, params, cnn, digits, tiny_budget):
    data = prepared(cnn, digits)
    last = run_trial(TrialSpec(name, {**params, "cut": cnn.n_blocks}, 2, 20), cnn, "k", data, tiny_budget)
    default = run_trial(TrialSpec(name, {**params, "cut": None}, 2, 20), cnn, "k", data, tiny_budget)
    _same_result(last, default)
    assert last.total_params == default.total_params


@pytest.mark.parametrize("model,k", [("cnn", 1), ("cnn", 2), ("mlp", 1)])
def test_a_frozen_truncated_network_is_a_linear_head_at_its_cut(model, k, request, digits, tiny_budget):
    """Two routes to one network: truncate removes the later blocks and puts a Linear head on the pooled cut;
    head(cut=k, depth=1) reads the same pooled, standardised cut. Same training, same numbers."""
    bb = request.getfixturevalue(model)
    data = prepared(bb, digits)
    a = run_trial(TrialSpec("truncate", {"n": k, "tune": False}, 1, 20), bb, "k", data, tiny_budget)
    b = run_trial(TrialSpec("head", {"depth": 1, "hidden": 256, "dropout": 0.0, "cut": k}, 1, 20), bb, "k", data,
                  tiny_budget)
    _same_result(a, b)
    assert a.total_params == b.total_params < sum(p.numel() for p in bb.parameters())


def test_pooling_reads_channels_of_maps_and_tokens_of_sequences():
    maps = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    torch.testing.assert_close(pool_state(maps), maps.mean(dim=(2, 3)))
    tokens = torch.randn(2, 7, 6)  # (batch, tokens, features), a ViT block's output
    torch.testing.assert_close(pool_state(tokens), tokens.mean(dim=1))
    mask = torch.tensor([[1, 1, 0, 0, 0, 0, 0], [1] * 7])
    got = pool_state((tokens, mask))
    torch.testing.assert_close(got[0], tokens[0, :2].mean(0))
    torch.testing.assert_close(got[1], tokens[1].mean(0))


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_truncate_keeping_everything_and_tuning_it_is_freeze_0(model, request, digits, tiny_budget):
    bb = request.getfixturevalue(model)
    data = prepared(bb, digits)
    a = run_trial(TrialSpec("truncate", {"n": bb.n_blocks, "tune": True}, 1, 5), bb, "k", data, tiny_budget)
    b = run_trial(TrialSpec("freeze_k", {"k": 0, "train_bn": False}, 1, 5), bb, "k", data, tiny_budget)
    _same_result(a, b)


def test_cached_cut_features_pooled_equal_the_truncated_networks_forward_pass(cnn, digits):
    data = prepared(cnn, digits)
    cache = FeatureCache(batch_size=64)
    cache.want(range(1, cnn.n_blocks + 1))
    cnn.eval()
    for k in range(1, cnn.n_blocks + 1):
        small = cnn.clone().truncate(k).eval()
        assert small.n_blocks == k + (k < cnn.n_blocks)  # a pool after a cut whose output is a feature map
        with torch.no_grad():
            own = small.features(data.val.inputs, small.n_blocks)
            cached = pool_state(cache.states(cnn, "m", "val", data.val, k).inputs)
            torch.testing.assert_close(cached, own, rtol=1e-5, atol=1e-6)
            # the head reads exactly that: forward = head(pooled cut k)
            torch.testing.assert_close(small(data.val.inputs), small.head(own), rtol=1e-5, atol=1e-6)
    assert cache.passes == 1


def test_a_truncated_network_counts_only_what_it_keeps(cnn, digits, tiny_budget):
    blocks = [sum(p.numel() for p in b.parameters()) for b in cnn.blocks.values()]
    dims = cnn.pooled_dims
    data = prepared(cnn, digits)
    for k in (1, 2):
        head = dims[k - 1] * data.n_classes + data.n_classes
        frozen = run_trial(TrialSpec("truncate", {"n": k, "tune": False}, 0, 5), cnn, "k", data, tiny_budget)
        tuned = run_trial(TrialSpec("truncate", {"n": k, "tune": True}, 0, 5), cnn, "k", data, tiny_budget)
        assert frozen.total_params == tuned.total_params == sum(blocks[:k]) + head
        assert frozen.trainable_params == head and tuned.trainable_params == sum(blocks[:k]) + head
        probe = run_trial(TrialSpec("linear_probe", {"kind": "logreg", "cut": k, "Cs": None}, 0, 5), cnn, "k", data,
                          tiny_budget)
        assert probe.total_params == frozen.total_params
        assert frozen.infer_ms is not None and frozen.infer_ms > 0


def test_truncate_refuses_what_cannot_be_cut(cnn):
    from transferlab.errors import UserError

    with pytest.raises(UserError, match="at least one block"):
        cnn.clone().truncate(0)
    small = cnn.clone().truncate(2)
    with pytest.raises(ValueError, match="once"):
        small.truncate(1)
    assert cnn.clone().truncate(cnn.n_blocks).kept_from is None  # nothing removed: the same network
    for bad in (0, 4, "x", True, 1.5):
        with pytest.raises(UserError):
            from_spec("truncate", {"n": bad}).check(cnn)


def test_each_cut_expands_like_freeze_k(cnn):
    every = [s.label for s in from_spec("linear_probe", {"cut": "each"}).expand(cnn)]
    assert every == [f"linear_probe(cut={k})" for k in (1, 2, 3)]
    assert [s.n for s in from_spec("truncate", {}).expand(cnn)] == [1, 2, 3]
    assert [s.n for s in from_spec("truncate", {"n": "each"}).expand(cnn)] == [1, 2, 3]
    assert [s.cut for s in from_spec("head", {"cut": "each"}).expand(cnn, PlanContext(depths=[2]))] == [2]
    assert from_spec("head", {}).expand(cnn) == [from_spec("head", {})]  # no cut: the last one, as before
    scores = {1: 0.1, 2: 0.9, 3: 0.5}  # cut 2 ranks first on every score
    profile = {"cuts": [{"k": k, **dict.fromkeys(("logme", "hscore", "knn_acc", "probe_acc"), v)}
                        for k, v in scores.items()]}
    auto = [s.n for s in from_spec("truncate", {}).expand(cnn, PlanContext(depths="auto", profile=profile))]
    assert 2 in auto and cnn.n_blocks in auto  # the profile's best cuts, and the whole network to compare with


def test_a_truncated_winner_is_saved_as_the_smaller_network_and_predict_runs_it(cnn, digits, tiny_budget, tmp_path):
    import csv

    import numpy as np

    from transferlab.saving import load_saved, predict, save_model

    data = prepared(cnn, digits)
    full = sum(p.numel() for p in cnn.parameters())
    for spec in (TrialSpec("truncate", {"n": 2, "tune": True}, 0, 20),
                 TrialSpec("linear_probe", {"kind": "logreg", "cut": 2, "Cs": None}, 0, 20)):
        kept = []
        rec = run_trial(spec, cnn, "k", data, tiny_budget, keep=kept)
        out = tmp_path / spec.strategy
        save_model(kept[0], cnn, out, data.class_names, rec.label)
        loaded, meta = load_saved(out)
        assert meta["keep"] == 2 and loaded.block_names == ["conv1", "conv2", "pool"]
        assert meta["params"] == sum(p.numel() for p in loaded.parameters()) == rec.total_params < full
        raw = digits.val.inputs[:50]
        x = cnn.preprocessing.apply(raw)
        with torch.no_grad():
            got = loaded.eval()(x).argmax(1).numpy()
        if spec.strategy == "truncate":
            with torch.no_grad():
                want = kept[0].model.eval()(x).argmax(1).numpy()
        else:
            feats = pool_state(cnn.eval().features(x, 2)).detach().numpy()
            want = kept[0].model.predict(feats)
        assert (got == want).all()
        np.savez(tmp_path / "new.npz", X=raw.numpy())
        rows = list(csv.reader(open(predict(out, str(tmp_path / "new.npz"), tmp_path / f"{spec.strategy}.csv"))))
        assert len(rows) == 51
        names = data.class_names
        assert [r[1] for r in rows[1:]] == [str(names[i]) for i in got], rows[:3]
