"""Step budgets and the convergence rule (training.py, fitloop.py), grid extension (trial.py), standardised heads."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transferlab.backbones.base import Standardize
from transferlab.data.base import Split
from transferlab.errors import UserError
from transferlab.fitloop import EvalLog, FitRun, batch_stream, loss_flat
from transferlab.training import Budget


def test_the_default_budget_has_a_step_floor_and_explicit_budgets_are_honoured():
    b = Budget()
    assert b.plan(25).steps == 500, "5 per class x 5 classes: 30 passes would be 30 steps; the floor gives 500"
    assert b.plan(5000).steps == 30 * math.ceil(5000 / 32), "large data: 30 passes, above the floor"
    assert Budget(epochs=3).plan(25).steps == 3, "an explicit epoch budget is honoured (the record shows convergence)"
    assert Budget(steps=77).plan(5000).steps == 77
    assert Budget().plan(25).limit == 4 * 500, "a run still improving may go on to 4x the default budget"
    assert Budget(steps=100).plan(25).limit == 100, "an explicit budget is kept as given"
    assert Budget(steps=100, extend=3).plan(25).limit == 300
    assert Budget(schedule="cosine").plan(25).limit == 500, "an annealed schedule ends at its budget"
    assert Budget().plan(25).eval_every == 13, "small data: budget/40 steps between validations"
    assert Budget().plan(50_000).eval_every == 250, "large data: at most 250 steps between validations"


@pytest.mark.parametrize("bad", [{"steps": 0}, {"epochs": -1}, {"patience": 0}, {"extend": 0}, {"lrs": ()},
                                 {"lrs": (1e-3, -1.0)}, {"eval_every": 2.5}, {"batch_size": 0}])
def test_bad_budgets_are_refused_in_one_line(bad):
    with pytest.raises(UserError):
        Budget(**bad)


def test_batches_are_full_and_drawn_again_when_the_subset_is_smaller_than_a_batch():
    g = torch.Generator().manual_seed(0)
    stream = batch_stream(5, 8, g)
    batches = [next(stream) for _ in range(5)]
    assert all(len(b) == 8 for b in batches)
    seen = torch.cat(batches)
    assert torch.bincount(seen, minlength=5).tolist() == [8] * 5, "whole passes: every example equally often"
    big = batch_stream(100, 32, torch.Generator().manual_seed(0))
    first = torch.cat([next(big) for _ in range(3)])[:96]
    assert len(set(first.tolist())) == 96, "within a pass no example repeats"


def _log(step, loss, acc=0.5):
    return EvalLog(step, loss, acc, 1.0, 0.5, 0.0)


def test_training_loss_flat_needs_two_windows_and_a_small_fall_or_a_fitted_set():
    falling = [_log(i + 1, 1.0 * 0.8 ** i) for i in range(8)]
    assert not loss_flat(falling, 4), "a loss still falling 20% a period is not flat"
    level = [_log(i + 1, 0.5 + 0.01 * (i % 2)) for i in range(8)]
    assert loss_flat(level, 4)
    assert not loss_flat(level[:7], 4), "fewer than two windows: not yet judged"
    tail = [_log(i + 1, 2.0 / (1 + i)) for i in range(60)]
    assert loss_flat(tail, 4) and not loss_flat(tail[:8], 4), "a long tail of diminishing returns is flat"
    fitted = [_log(i + 1, 0.5 * 0.7 ** i, acc=1.0) for i in range(8)]
    assert loss_flat(fitted, 4), "every training example right: the loss only falls by growing the logits"


def _toy(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return Split(x, y)


def test_a_run_still_improving_at_its_budget_goes_on_and_one_that_converged_stops():
    torch.manual_seed(0)
    train, val = _toy(), _toy(400, seed=1)
    model = nn.Linear(4, 2)
    # A small LR: validation keeps improving (over 1% a few evaluations), so the run goes past its 20-step
    # budget to the 4x limit, and is marked unconverged.
    slow = FitRun(model, [{"params": list(model.parameters()), "lr": 3e-3}], train, val,
                  Budget(steps=20, eval_every=2, patience=3, extend=4), torch.Generator().manual_seed(0)).finish()
    assert slow.steps_run == 80 and slow.stop == "limit" and slow.converged is False
    model = nn.Linear(4, 2)
    quick = FitRun(model, [{"params": list(model.parameters()), "lr": 0.1}], train, val,
                   Budget(steps=200, eval_every=2, patience=3), torch.Generator().manual_seed(0)).finish()
    assert quick.converged is True and quick.stop == "converged" and quick.steps_run < 200


def test_standardize_matches_the_probe_scaler():
    from sklearn.preprocessing import StandardScaler

    x = torch.randn(50, 6) * torch.tensor([1e-3, 1, 10, 100, 0, 2]) + 5
    got = Standardize.fitted(x)(x)
    want = StandardScaler().fit_transform(x.double().numpy())
    torch.testing.assert_close(got.double(), torch.as_tensor(want), rtol=1e-4, atol=1e-4)
