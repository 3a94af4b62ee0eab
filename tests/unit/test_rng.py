"""Each run's own randomness (rng.py): dropout masks keyed by the run, and older studies that drew from torch's
shared stream not resumed where dropout trains."""
from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from transferlab.errors import UserError
from transferlab.rng import KeyedDropout, OwnRng, key_dropout, member_seed, uniform


def test_dropout_masks_are_the_runs_own():
    """Two runs with one key draw the same masks whatever happened to the global stream; another key draws others."""
    net = nn.Sequential(nn.Linear(4, 64), nn.Dropout(0.5), nn.Linear(64, 2))
    a, b, c = copy.deepcopy(net), copy.deepcopy(net), copy.deepcopy(net)
    key_dropout(a, 7), key_dropout(b, 7), key_dropout(c, 8)
    assert isinstance(a[1], KeyedDropout) and a[1].p == 0.5
    x = torch.ones(3, 4)
    first = a(x)
    torch.rand(100)  # the global stream moves: the masks do not
    assert torch.equal(first, b(x))
    assert not torch.equal(first, c(x))
    assert not torch.equal(a(x), first)  # the next call draws new masks
    a.eval()
    assert torch.equal(a[1](x), x)
    assert set(a.state_dict()) == set(net.state_dict())  # a saved model is nn.Dropout's


def test_keyed_uniforms_are_uniform_and_independent():
    """The hash's numbers: mean 1/2, variance 1/12, no correlation between neighbours, between calls or keys."""
    u = uniform(torch.tensor(3), 0, torch.tensor(0), (200_000,), "cpu").double()
    v = uniform(torch.tensor(3), 0, torch.tensor(1), (200_000,), "cpu").double()
    w = uniform(torch.tensor(4), 0, torch.tensor(0), (200_000,), "cpu").double()
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    for a, b in ((u[1:], u[:-1]), (u, v), (u, w)):
        assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1]) < 0.01
    kept = (KeyedDropout(0.3, 5, 0).train()(torch.ones(100_000)) > 0).double().mean()
    assert abs(kept - 0.7) < 0.01


def test_a_runs_seed_depends_on_its_seed_and_candidate_only():
    assert member_seed(0, {"lr": 1e-3}) == member_seed(0, {"lr": 1e-3})
    assert len({member_seed(s, {"lr": lr}) for s in range(5) for lr in (1e-3, 3e-3)}) == 10


def test_own_rng_keeps_each_runs_stream_apart_from_the_global_one():
    a, b = OwnRng(1, "cpu"), OwnRng(1, "cpu")
    with a.active():
        first = torch.rand(3)
    torch.manual_seed(123)
    outside = torch.rand(3)
    with b.active():
        assert torch.equal(torch.rand(3), first)
    with a.active():
        second = torch.rand(3)
    with b.active():
        assert torch.equal(torch.rand(3), second)  # each run's stream goes on where it stopped
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), outside)  # and the global stream is left as it was


def test_a_study_whose_dropout_came_from_the_shared_stream_is_not_resumed_where_dropout_trains(tmp_path):
    from transferlab.pipeline import check_folder
    from transferlab.results import check_schema

    old = {"schema": 5, "model_key": "m", "data_key": "d", "config": {}, "data": {"splits": {}}}
    assert check_schema(dict(old), "x")["dropout_masks"] == "shared"
    assert "dropout_masks" not in check_schema({"schema": 5, "trial_id": "t"}, "x")  # a record: only the version
    (tmp_path / "study.json").write_text(json.dumps(old))
    with pytest.raises(UserError, match="dropout masks came from torch's shared stream"):
        check_folder(tmp_path, "m", "d", None, dropout=True)
    check_folder(tmp_path, "m", "d", None, dropout=False)  # no dropout trains: its records are today's


def test_a_tokens_mask_does_not_depend_on_how_far_its_batch_was_padded():
    short = uniform(torch.tensor(9), 2, torch.tensor(4), (2, 5, 3), "cpu")
    long = uniform(torch.tensor(9), 2, torch.tensor(4), (2, 7, 3), "cpu")
    assert torch.equal(long[:, :5], short)


def test_keyed_dropout_under_vmap_draws_each_members_own_masks():
    """Stacked keys and counts, one vmapped call: each member's output is the one it gets alone, and each member's
    count advances in its own slice (as a cohort's stacked buffers do)."""
    from torch.func import functional_call, vmap

    nets = [nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5)) for _ in range(3)]
    for i, n in enumerate(nets):
        key_dropout(n, 100 + i)
    alone = [copy.deepcopy(n)(torch.ones(5, 4)) for n in nets]
    params = {k: torch.stack([dict(n.named_parameters())[k] for n in nets]) for k, _ in nets[0].named_parameters()}
    buffers = {k: torch.stack([n.get_buffer(k) for n in nets]) for k, _ in nets[0].named_buffers()}
    out = vmap(lambda p, b: functional_call(nets[0], {**p, **b}, (torch.ones(5, 4),)), randomness="error")(params, buffers)
    for i in range(3):
        assert torch.equal(out[i], alone[i])
    assert buffers["1.count"].tolist() == [1, 1, 1]
