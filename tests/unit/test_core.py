"""Small units: statistics, the store, the registry, the Backbone contract."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from transferlab.analysis.stats import mean_ci
from transferlab.backbones.base import Backbone, from_sequential
from transferlab.errors import UserError
from transferlab.results import TrialStore
from transferlab.strategies.base import Strategy, from_spec, register
from transferlab.training import block_lr


def test_mean_ci_matches_scipy():
    v = [0.81, 0.85, 0.79, 0.9]
    ci = mean_ci(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert ci["lo"] == pytest.approx(lo) and ci["hi"] == pytest.approx(hi)
    assert math.isnan(mean_ci([0.5])["lo"])


def test_block_lr_is_layer_decay():
    assert block_lr(2, 3, 1.0, 0.1) == pytest.approx(0.1)
    assert block_lr(0, 3, 1.0, 0.1, 0.5) == pytest.approx(0.025)


def test_store_survives_a_torn_line(tmp_path):
    store = TrialStore(tmp_path / "t.jsonl")
    store.append({"trial_id": "a", "status": "ok"})
    with open(store.path, "ab") as f:
        f.write(b'{"trial_id": "b", "sta')  # killed mid-write
    assert [r["trial_id"] for r in store.load()] == ["a"]
    store.append({"trial_id": "c", "status": "ok"})
    assert [json.loads(line)["trial_id"] for line in store.path.read_text().splitlines()] == ["a", "c"]
    assert store.done_ids() == {"a", "c"}


def test_registry_rejects_duplicate_names():
    from dataclasses import dataclass

    with pytest.raises(ValueError, match="already registered"):
        @register
        @dataclass(frozen=True)
        class Again(Strategy):
            name = "scratch"


def test_unknown_strategy_suggests():
    with pytest.raises(UserError, match="did you mean: finetune"):
        from_spec("finetun")
    with pytest.raises(UserError, match="no parameter 'body_lr'"):
        from_spec("finetune", {"body_lr": 0.1})


def test_labels_show_only_non_defaults():
    assert from_spec("finetune").label == "finetune"
    assert from_spec("linear_probe", {"kind": "svm"}).label == "linear_probe(kind=svm)"


def test_from_sequential_groups_blocks():
    seq = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                        nn.Linear(16, 3))
    bb = from_sequential(seq, torch.zeros(4, 64))
    assert bb.n_blocks == 2 and bb.feature_dim == 16
    assert isinstance(bb.head, nn.Linear) and bb.head.out_features == 3
    x = torch.randn(5, 64)
    seq.eval(), bb.eval()
    torch.testing.assert_close(bb(x), seq(x))


def test_contract_is_checked_at_build_time():
    with pytest.raises(UserError, match="not \\(batch, features\\)"):
        Backbone([("c", nn.Conv2d(1, 2, 3))], nn.Linear(2, 2), torch.zeros(2, 1, 8, 8))
    with pytest.raises(UserError, match="fails on the output"):
        Backbone([("a", nn.Linear(4, 3)), ("b", nn.Linear(5, 2))], nn.Linear(2, 2), torch.zeros(2, 4))

    class NoReset(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * self.w

    with pytest.raises(UserError, match="no reset_parameters"):
        Backbone([("a", NoReset())], nn.Linear(4, 2), torch.zeros(2, 4))


def test_freeze_keeps_bn_in_eval_unless_train_bn(cnn):
    bb = cnn.clone().freeze(2)
    bb.train()
    bns = [m for m in bb.blocks["conv1"].modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert bb.blocks["conv3"].training
    before = bns[0].running_mean.clone()
    bb(torch.randn(8, 1, 8, 8) * 3 + 1)
    assert torch.equal(bns[0].running_mean, before)
    bb2 = cnn.clone().freeze(2, train_bn=True)
    bb2.train()
    bn2 = [m for m in bb2.blocks["conv1"].modules() if isinstance(m, nn.BatchNorm2d)][0]
    assert bn2.training and bn2.weight.requires_grad
    bb2(torch.randn(8, 1, 8, 8) * 3 + 1)
    assert not torch.equal(bn2.running_mean, before)
    with pytest.raises(UserError, match="outside this model"):
        cnn.clone().freeze(4)


def test_one_cycle_follows_fastai_shape():
    from transferlab.training import SCHEDULES

    w = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([{"params": [w], "lr": 1e-2}, {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1e-3}])
    sched = SCHEDULES["onecycle"](opt, 100)
    lrs = []
    for _ in range(100):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    head, body = zip(*lrs)
    assert head[0] == pytest.approx(1e-2 / 25) and body[0] == pytest.approx(1e-3 / 25)
    assert max(head) == pytest.approx(1e-2, rel=1e-3) and 20 <= head.index(max(head)) <= 26
    assert head[-1] < 1e-2 / 1e4
    assert all(b / h == pytest.approx(0.1) for h, b in zip(head, body)), "groups keep their ratio"


def test_schedule_changes_training_and_unknown_is_refused(cnn, digits):
    from tests.conftest import prepared
    from transferlab.errors import UserError
    from transferlab.fitloop import fit
    from transferlab.training import Budget, param_groups

    data = prepared(cnn, digits)
    curves = {}
    for schedule in ("constant", "onecycle"):
        torch.manual_seed(0)
        bb = cnn.clone().replace_head(data.n_classes)
        budget = Budget(epochs=3, patience=3, batch_size=16, schedule=schedule)
        res = fit(bb, param_groups(list(bb.blocks.values()), bb.head, 1e-2), data.train, data.val, budget,
                  torch.Generator().manual_seed(0))
        curves[schedule] = [h.train_loss for h in res.history]
    assert curves["constant"] != curves["onecycle"]
    with pytest.raises(UserError, match="unknown LR schedule 'onecycel'.*onecycle"):
        Budget(schedule="onecycel")
