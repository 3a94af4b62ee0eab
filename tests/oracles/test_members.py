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
        _same(run_trial(spec, bb, "m", data, BUDGET), batched, "batched: 9 members (seeds 0, 1, 2)")


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
        _same(solo, batched, "batched: 6 members (seeds 3, 4)")


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
    assert len(ran) == 4 and {t["members"] for t in ran} == {"batched: 4 members (seeds 0, 1)"}
    auto = StudyConfig(batch_members="auto")
    from transferlab.members import batch_mode

    assert batch_mode(auto.batch_members, "cpu")[0] is False and batch_mode("auto", "cuda")[0] is True
    # Resumed one member at a time, its seeds' records could differ in float32 rounding: refused in one line.
    from dataclasses import replace

    from transferlab.errors import UserError

    with pytest.raises(UserError, match="trained as batched members.*batch_members = true"):
        run_study(mlp, digits, replace(cfg, batch_members=False), out=tmp_path, report=False)
    run_study(mlp, digits, cfg, out=tmp_path, report=False)  # the same mode resumes (nothing left to train)


def _mlp():
    from transferlab import zoo

    return zoo.pretrained("mlp")


COHORT_CASES = {  # (network, strategy, its parameters)
    "dropout_head": (_mlp, "head", {"depth": 2, "hidden": 32, "dropout": 0.5}),  # a new head with dropout
    "bn_scratch": (_bn_cnn, "scratch", {}),  # BatchNorm statistics of a re-initialised network
}


@pytest.mark.parametrize("case", sorted(COHORT_CASES))
def test_a_seed_gets_its_record_in_any_cohort_in_float32(case, digits):
    """Issue 36's oracle, in float32 as a study runs: seed 0 alone and in cohorts [0], [0, 1] and [0, 1, 2] makes
    the same choices (learning rate, step, stop of every candidate) and scores within 0.1 pp on validation and test.
    Each member draws its dropout masks from its own key (rng.KeyedDropout) and its own generator state, so this
    holds with dropout; the tolerance covers float32 rounding, where a batched convolution sums in another order."""
    make, strategy, params = COHORT_CASES[case]
    bb = make()
    data = prepared(bb, digits)
    spec = lambda s: TrialSpec(strategy, params, s, 10)  # noqa: E731
    budget = BUDGET if case == "bn_scratch" else Budget(steps=60, eval_every=5, patience=4, batch_size=16,
                                                        lrs=(1e-3, 3e-3, 1e-2), grid_extensions=1)
    alone = run_trial(spec(0), bb, "m", data, budget)
    assert alone.status == "ok" and alone.members == ""
    for cohort in ([0], [0, 1], [0, 1, 2]):
        rec = run_seeds([spec(s) for s in cohort], bb, "m", data, budget, members=True)[0]
        assert rec.members == f"batched: {3 * len(cohort)} members" + (
            f" (seeds {', '.join(map(str, cohort))})" if len(cohort) > 1 else ""), rec.members  # the cohort formed
        assert (rec.chosen, rec.best_step, rec.stop) == (alone.chosen, alone.best_step, alone.stop), cohort
        assert [(c["lr"], c["best_step"], c["steps"], c["stop"]) for c in rec.candidates] == [
            (c["lr"], c["best_step"], c["steps"], c["stop"]) for c in alone.candidates]
        assert abs(rec.best_val_acc - alone.best_val_acc) <= 1e-3
        assert abs(rec.test_acc - alone.test_acc) <= 1e-3
        assert [(h["step"], round(h["val_acc"], 3)) for h in rec.history] == [
            (h["step"], round(h["val_acc"], 3)) for h in alone.history]  # the chosen candidate's whole curve


def test_a_network_with_other_randomness_trains_one_at_a_time(digits):
    """Stochastic depth draws from torch's global generator inside the forward pass: batched, the members would share
    one stream, so they train one at a time and the record says why; each run still draws from its own state."""

    class DropPath(nn.Module):
        def forward(self, x):
            return x * (torch.rand(x.shape[0], 1) > 0.2).float() / 0.8 if self.training else x

    torch.manual_seed(0)
    bb = Backbone([("a", nn.Sequential(nn.Flatten(), nn.Linear(64, 16), DropPath()))], nn.Linear(16, 5),
                  torch.zeros(2, 1, 8, 8), Preprocessing(kind="image", input_shape=(1, 8, 8)), [str(c) for c in range(5)])
    data = prepared(bb, digits)
    spec = TrialSpec("finetune", {}, 0, 5)
    solo, batched = run_trial(spec, bb, "m", data, BUDGET), run_trial(spec, bb, "m", data, BUDGET, members=True)
    assert batched.members.startswith("one at a time: the network draws random numbers outside nn.Dropout")
    assert (batched.test_acc, batched.chosen, batched.best_step) == (solo.test_acc, solo.chosen, solo.best_step)
    torch.manual_seed(12345)  # whatever the global stream holds, each run draws from its own (rng.OwnRng)
    again = run_trial(spec, bb, "m", data, BUDGET)
    assert (again.test_acc, again.chosen, _curve(again)) == (solo.test_acc, solo.chosen, _curve(solo))


def _curve(rec) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in rec.history]


def test_seeds_go_in_cohorts_that_fit_and_keep_their_records(mlp, digits, monkeypatch):
    """When memory takes two seeds per cohort, three seeds train as [0, 1] then [2], each record as in one cohort of
    all three (the MLP's batched arithmetic is the same for any cohort); when not even one seed's candidates fit,
    each seed trains alone and its record says why."""
    from transferlab import members

    data = prepared(mlp, digits)
    specs = [TrialSpec("finetune", {}, s, 5) for s in (0, 1, 2)]
    whole = run_seeds(specs, mlp, "m", data, BUDGET, members=True)
    monkeypatch.setattr(members, "seeds_that_fit", lambda need, device, free=None: 2)
    split = run_seeds(specs, mlp, "m", data, BUDGET, members=True)
    assert [r.members for r in split] == ["batched: 6 members (seeds 0, 1)"] * 2 + ["batched: 3 members"]
    for a, b in zip(whole, split):
        assert (a.test_acc, a.chosen, a.best_step, _curve(a)) == (b.test_acc, b.chosen, b.best_step, _curve(b))
    monkeypatch.setattr(members, "free_bytes", lambda device: 1000)
    tiny = run_seeds(specs, mlp, "m", data, BUDGET, members=True)
    assert all(r.members.startswith("one at a time: its 3 candidates need about") for r in tiny)
    for a, b in zip(whole, tiny):
        assert b.status == "ok" and (a.chosen, a.best_step) == (b.chosen, b.best_step)


def test_a_members_footprint_is_measured_without_touching_it(bn_cnn, digits):
    """member_bytes: at least the weights three times over plus the optimizer's state, more for a bigger batch, and the
    member's BatchNorm statistics and dropout counts are as they were."""
    from transferlab.fitloop import FitRun
    from transferlab.members import member_bytes
    from transferlab.training import param_groups

    data = prepared(bn_cnn, digits)
    bb = bn_cnn.clone().replace_head(data.n_classes)
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    run = FitRun(bb, param_groups(list(bb.blocks.values()), bb.head, 1e-3), data.train, data.val, BUDGET,
                 torch.Generator().manual_seed(0))
    weights = sum(p.numel() * 4 for p in bb.parameters())
    small = member_bytes(run)
    assert small >= 7 * weights
    from dataclasses import replace

    run.budget = replace(BUDGET, batch_size=64)
    assert member_bytes(run) > small  # the activations grow with the batch
    assert all(torch.equal(v, bb.state_dict()[k]) for k, v in before.items())
