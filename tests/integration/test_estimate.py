"""The cost estimate: its step count is the one trials really train, and a dry run checks but writes nothing.
(How close the estimate comes to real wall time is measured in benchmarks/, never asserted on time here.)"""
from __future__ import annotations

import json

import pytest

import transferlab as tl
from tests.conftest import cli
from transferlab.estimate import candidate_steps
from transferlab.results import TrialSpec
from transferlab.trial import run_trial


@pytest.mark.parametrize("n,steps,every,halving,expected", [
    (3, 32, 1, True, 3 * 8 + 2 * 8 + 16), (3, 32, 1, False, 96), (1, 32, 1, True, 32),
    (4, 32, 4, True, 4 * 8 + 2 * 8 + 16),
    (3, 30, 4, True, 3 * 8 + 2 * 8 + 14),  # rungs at 7 and 14 steps are reached in whole periods: 8 and 16
])
def test_candidate_steps_follow_the_rungs(n, steps, every, halving, expected):
    assert candidate_steps(n, steps, every, halving) == expected


@pytest.mark.parametrize("lrs", [(1e-3, 3e-3, 1e-2), (1e-4, 3e-4, 1e-3, 3e-3)])
def test_counted_steps_equal_a_trial_without_early_stopping(cnn, digits, lrs):
    """Oracle: with patience beyond the budget (and no extension), a halving trial trains exactly candidate_steps."""
    from transferlab.pipeline import prepare

    budget = tl.Budget(steps=40, eval_every=3, patience=100, extend=1, grid_extensions=0, lrs=lrs)
    data = prepare(digits, cnn)
    spec = TrialSpec("finetune", {"body_lr_mult": 0.1, "layer_decay": 1.0}, 0, 5, "finetune")
    rec = run_trial(spec, cnn, "k", data, budget, halving=True)
    assert rec.steps_run == candidate_steps(len(lrs), 40, 3, True)


def test_a_study_records_its_estimate_and_the_time_left_weighs_by_it(cnn, digits, tmp_path):
    from transferlab.cli.progress import RichProgress

    seen = []

    class Keep(tl.StudyCallback):
        def on_estimate(self, est):
            seen.append(est)

    cfg = tl.StudyConfig(seeds=[0, 1], sizes=[5], budget=tl.Budget(epochs=3, patience=2, lrs=(3e-3, 1e-2)),
                         strategies=[{"name": "scratch"}, {"name": "head"}, {"name": "finetune"}])
    res = tl.run_study(cnn, digits, cfg, tmp_path / "s", callbacks=[Keep(), RichProgress(plain=True)], report=False)
    est = seen[0]
    assert est.trials_first == est.trials_max == 6 and set(est.trial_s) == {r["trial_id"] for r in res.trials}
    assert est.per_label["finetune"] > est.per_label["head"] > 0  # a full fine-tune costs more than a head
    assert res.study["estimate"]["first_s"] == pytest.approx(est.first_s)
    resumed = []
    tl.run_study(cnn, digits, cfg, tmp_path / "s", callbacks=[type("K", (Keep,), {"on_estimate": lambda s, e: resumed.append(e)})()],
                 report=False)
    assert resumed[0].trials_first == 0 and resumed[0].first_s == pytest.approx(0.0, abs=1e-9)


def test_dry_run_checks_estimates_and_writes_nothing(tmp_path):
    out = tmp_path / "s"
    res = cli("run", "--model", "demo:cnn", "--model", "demo:mlp", "--data", "demo:digits", "--out", str(out), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("Estimated: about") == 2 and "All 2 sources" in res.stdout and "nothing was trained" in res.stdout
    assert not out.exists()
    bad = cli("run", "--model", "demo:cnn", "--data", "demo:digits", "--strategies", "scratch,finetun", "--dry-run")
    assert bad.returncode == 2 and "finetun" in bad.stderr


def test_sequential_estimate_spans_first_round_to_every_seed():
    from transferlab import zoo
    from transferlab.data.builtin import digits_target
    from transferlab.execution import estimate_study

    cfg = tl.StudyConfig(sizes=[5], strategies=[{"name": "scratch"}, {"name": "head"}])
    est = estimate_study(zoo.pretrained("cnn"), digits_target(), cfg)
    assert (est.trials_first, est.trials_max) == (2 * 3, 2 * 10)
    assert est.max_s > est.first_s
    assert json.loads(json.dumps(est.to_dict()))["trials_max"] == 20


def test_worker_processes_share_the_estimated_wall_time():
    """The trials share the workers, the cache's passes run alone before them, and the text says so."""
    from transferlab.estimate import Estimate

    est = Estimate(first_s=110.0, max_s=210.0, trials_first=10, trials_max=20, steps=500, measure_s=0.1,
                   device="cpu", parallel=2, once_s=10.0)
    assert est.wall(est.first_s) == pytest.approx(10 + 100 / 2) and est.wall(est.max_s) == pytest.approx(110)
    assert est.wall(5.0) == pytest.approx(5.0)  # less than the cache's passes: nothing to share
    assert "about 60 s" in est.text() and "in 2 worker processes" in est.text() and "up to 2 min" in est.text()
    alone = Estimate(110.0, 210.0, 10, 20, 500, 0.1, "cpu", once_s=10.0)
    assert alone.wall(alone.first_s) == 110.0 and "worker" not in alone.text()
