"""Members trained together (members.Cohort) equal the same members trained one at a time.

Each LR candidate of a trial, trained in one batched model, must show the per-step losses, the chosen
step, the stop and the test accuracy of its solo run.  Evaluating every step (``eval_every=1``) makes the
recorded curve the per-step training loss.

The BatchNorm network here has no bias before its BatchNorm layers (as ResNets and timm's models): a bias
there has a true gradient of zero, so what reaches it is rounding noise, which Adam scales up to full-size
steps; such a run differs between any two summation orders (one thread against two, solo included).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.conftest import prepared
from transferlab.backbones.base import Backbone, Preprocessing
from transferlab.results import TrialSpec
from transferlab.fitloop import Hook
from transferlab.training import Budget
from transferlab.trial import run_seeds, run_trial

BUDGET = Budget(steps=30, eval_every=1, patience=5, batch_size=16, lrs=(1e-3, 3e-3, 1e-2), grid_extensions=1)


def _bn_cnn() -> Backbone:
    torch.manual_seed(0)
    blocks = [
        ("conv1", nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())),
        ("conv2", nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                nn.MaxPool2d(2))),
        ("conv3", nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(1), nn.Flatten())),
    ]
    return Backbone(blocks, nn.Linear(16, 5), torch.zeros(2, 1, 8, 8),
                    Preprocessing(kind="image", input_shape=(1, 8, 8)), [str(c) for c in range(5)])


@pytest.fixture(scope="module")
def bn_cnn():
    return _bn_cnn()


def _same(solo, batched, members: str = "batched: 3 members") -> None:
    assert solo.status == batched.status == "ok"
    assert batched.members == members
    assert solo.members == ""
    assert len(solo.candidates) == len(batched.candidates)
    for a, b in zip(solo.candidates, batched.candidates):
        assert (a["lr"], a["best_step"], a["steps"], a["stop"]) == (b["lr"], b["best_step"], b["steps"], b["stop"])
        assert a["best_val_acc"] == pytest.approx(b["best_val_acc"], abs=1e-9)
    assert solo.chosen == batched.chosen
    assert solo.best_step == batched.best_step
    assert solo.test_acc == pytest.approx(batched.test_acc, abs=1e-9)
    assert len(solo.history) == len(batched.history) > 5
    for a, b in zip(solo.history, batched.history):  # one evaluation per step: the per-step losses
        assert a["step"] == b["step"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-6)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-9)


def _in_double(bb, data):
    """The network and its data in float64: members that see different inputs run vmap's batched kernels, whose
    float32 sums differ from a solo pass in the last bits; over 30 Adam steps that can flip one borderline
    validation example.  In float64 the two agree far below any decision, so the oracle can ask for equality."""
    from dataclasses import replace

    from transferlab.data.base import SealedSplit, Split

    def dbl(split):
        return None if split is None else Split(split.inputs.double(), split.y)

    return bb.clone().double(), replace(data, train=dbl(data.train), val=dbl(data.val), holdout=dbl(data.holdout),
                                        test=SealedSplit(dbl(data.test.open("check:test_double"))))


@pytest.fixture()
def float64():
    """New layers (a replaced head) in float64 too, for the duration of one test."""
    was = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(was)


STRATEGIES = [("scratch", {}), ("head", {}), ("freeze_k", {"k": 1, "train_bn": False}), ("finetune", {})]


@pytest.mark.parametrize("name,params", STRATEGIES, ids=[s for s, _ in STRATEGIES])
@pytest.mark.parametrize("model", ["bn_cnn", "mlp"])
def test_batched_members_equal_their_solo_runs(model, name, params, request, digits):
    bb = request.getfixturevalue(model)
    data = prepared(bb, digits)
    spec = TrialSpec(name, params, 1, 10)
    _same(run_trial(spec, bb, "m", data, BUDGET), run_trial(spec, bb, "m", data, BUDGET, members=True))


@pytest.mark.parametrize("model", ["bn_cnn", "mlp"])
def test_members_with_their_own_weights_and_data_equal_their_solo_runs(model, request, digits):
    """Seeds as members: each its own initialisation, training rows, data order and learning rate (the stacked-input
    path). Every member's whole curve, stop and restored weights equal its solo run."""
    from transferlab.members import Cohort
    from transferlab.fitloop import FitRun
    from transferlab.training import param_groups

    bb0 = request.getfixturevalue(model)
    data = prepared(bb0, digits)

    def runs() -> list:
        out = []
        for seed, lr in [(0, 1e-3), (1, 3e-3), (2, 1e-2)]:
            torch.manual_seed(seed)
            bb = bb0.clone().reinit().replace_head(data.n_classes)
            d = data.for_seed(seed)
            groups = param_groups(list(bb.blocks.values()), bb.head, lr)
            out.append(FitRun(bb, groups, d.train.subset(d.train_indices(10, seed)), d.val, BUDGET,
                              torch.Generator().manual_seed(seed)))
        return out

    solo, together = runs(), runs()
    for r in solo:
        r.finish()
    Cohort(together)
    for r in together:
        r.finish()
    for a, b in zip(solo, together):
        assert b.cohort is not None and (a.result.stop, a.result.best_step) == (b.result.stop, b.result.best_step)
        assert len(a.result.history) == len(b.result.history) > 5
        for x, y in zip(a.result.history, b.result.history):
            assert (x.step, x.val_acc) == (y.step, y.val_acc)
            assert x.train_loss == pytest.approx(y.train_loss, rel=1e-4, abs=1e-6)
            assert x.val_loss == pytest.approx(y.val_loss, rel=1e-4, abs=1e-6)
        sa, sb = a.model.state_dict(), b.model.state_dict()
        for k in sa:  # each member holds its own best checkpoint, statistics included
            torch.testing.assert_close(sa[k].float(), sb[k].float(), rtol=1e-4, atol=1e-5)


def test_batched_members_with_halving_and_augmentation(bn_cnn, digits):
    from dataclasses import replace

    from transferlab.data.augment import Augmentation

    data = replace(prepared(bn_cnn, digits), augment=Augmentation(("crop", "flip"), views=3, seed=0))
    spec = TrialSpec("finetune", {}, 2, 10)
    budget = replace(BUDGET, eval_every=2, steps=40)
    _same(run_trial(spec, bn_cnn, "m", data, budget, halving=True),
          run_trial(spec, bn_cnn, "m", data, budget, halving=True, members=True))


@pytest.mark.parametrize("name,params", STRATEGIES, ids=[s for s, _ in STRATEGIES])
@pytest.mark.parametrize("model", ["bn_cnn", "mlp"])
def test_seeds_trained_together_equal_their_solo_trials(model, name, params, request, digits, float64):
    """A configuration's seeds and LR candidates as one cohort of 9 members (the scheduler's unit on a GPU): each
    seed has its own splits (per-seed validation and test), training rows, initialisation and data order, and its
    record equals the one it gets alone."""
    from transferlab.data.base import hold_out, resplit

    bb = request.getfixturevalue(model)
    bb, data = _in_double(bb, prepared(bb, hold_out(digits)))
    data = resplit(data, "per_seed")  # as a study splits small data
    assert not torch.equal(data.for_seed(0).val.y, data.for_seed(1).val.y)  # per-seed splits: the members' data differ
    specs = [TrialSpec(name, params, seed, 10) for seed in (0, 1, 2)]
    together = run_seeds(specs, bb, "m", data, BUDGET, members=True)
    for spec, batched in zip(specs, together):
        assert batched.seed == spec.seed
        _same(run_trial(spec, bb, "m", data, BUDGET), batched, "batched: 9 members (3 seeds)")


def test_seeds_trained_together_are_halved_each_on_its_own(bn_cnn, digits, float64):
    """Successive halving cuts each seed's candidates at each rung, all seeds in step: as each seed alone."""
    from dataclasses import replace

    budget = replace(BUDGET, eval_every=2, steps=40)
    bn_cnn, data = _in_double(bn_cnn, prepared(bn_cnn, digits))
    specs = [TrialSpec("finetune", {}, seed, 10) for seed in (3, 4)]
    together = run_seeds(specs, bn_cnn, "m", data, budget, halving=True, members=True)
    for spec, batched in zip(specs, together):
        solo = run_trial(spec, bn_cnn, "m", data, budget, halving=True)
        assert [c["stop"] for c in solo.candidates].count("halted") >= 1  # halving cut something
        _same(solo, batched, "batched: 6 members (2 seeds)")


def test_a_failed_cohort_of_seeds_runs_each_seed_again_alone(mlp, digits, monkeypatch):
    """A cohort's failure (say, out of memory for all members at once) is not any one trial's: each seed runs again
    alone, and its record is the one it gets alone, with the cohort's failure noted."""
    from transferlab import members

    real = members.Cohort._period

    def period(self):
        if len(self.runs) > len(BUDGET.lrs):  # only the cohort of several seeds fails
            raise RuntimeError("out of memory (simulated)")
        return real(self)

    monkeypatch.setattr(members.Cohort, "_period", period)
    data = prepared(mlp, digits)
    specs = [TrialSpec("finetune", {}, seed, 5) for seed in (0, 1)]
    for spec, rec in zip(specs, run_seeds(specs, mlp, "m", data, BUDGET, members=True)):
        assert rec.status == "ok" and rec.error is None
        assert rec.members.startswith("batched: 3 members; its seeds' cohort failed (RuntimeError: out of memory")
        solo = run_trial(spec, mlp, "m", data, BUDGET, members=True)
        assert (rec.test_acc, rec.best_step, rec.chosen) == (solo.test_acc, solo.best_step, solo.chosen)


def test_a_hook_not_written_for_members_trains_them_one_at_a_time(mlp, digits):
    class Counter(Hook):
        def __init__(self):
            self.steps = 0

        def on_after_backward(self, model):
            self.steps += 1

    counter = Counter()
    data = prepared(mlp, digits)
    rec = run_trial(TrialSpec("head", {}, 0, 5), mlp, "m", data, BUDGET, hooks=(counter,), members=True)
    assert rec.status == "ok"
    assert rec.members == "one at a time: hook Counter is not written for batched members"
    assert counter.steps == rec.steps_run  # it saw every step of every candidate, each trained alone


def test_a_network_vmap_cannot_run_trains_one_at_a_time(digits):
    class Host(nn.Module):  # a data-dependent branch: vmap cannot decide it for all members at once
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(64, 16)

        def forward(self, x):
            h = self.lin(x.flatten(1))
            return h if bool(h.sum() > -1e9) else -h

    torch.manual_seed(0)
    bb = Backbone([("a", Host())], nn.Linear(16, 5), torch.zeros(2, 1, 8, 8),
                  Preprocessing(kind="image", input_shape=(1, 8, 8)), [str(c) for c in range(5)])
    data = prepared(bb, digits)
    spec = TrialSpec("finetune", {}, 0, 5)
    solo, batched = run_trial(spec, bb, "m", data, BUDGET), run_trial(spec, bb, "m", data, BUDGET, members=True)
    assert batched.members.startswith("one at a time: vmap cannot run this network")
    assert batched.test_acc == solo.test_acc
    assert [{**h, "seconds": 0} for h in batched.history] == [{**h, "seconds": 0} for h in solo.history]


def test_the_study_says_how_members_trained(mlp, digits, tmp_path):
    import json

    from transferlab.config import StudyConfig
    from transferlab.execution import run_study

    cfg = StudyConfig(strategies=["scratch", "head"], sizes=[5], seeds=[0, 1], profile=False, estimate=False,
                      budget=Budget(steps=20, patience=2, batch_size=16, lrs=(1e-3, 1e-2)), batch_members=True)
    run_study(mlp, digits, cfg, out=tmp_path, report=False)
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["members"] == {"batched": True, "why": "batched: batch_members = true"}
    trials = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    ran = [t for t in trials if t["strategy"] != "zero_shot"]  # each configuration's seeds in one cohort
    assert len(ran) == 4 and {t["members"] for t in ran} == {"batched: 4 members (2 seeds)"}
    auto = StudyConfig(batch_members="auto")
    from transferlab.members import batch_mode

    assert batch_mode(auto.batch_members, "cpu")[0] is False and batch_mode("auto", "cuda")[0] is True
