"""The cost estimate: its step count is the one trials really train, and a dry run checks but writes nothing.
(How close the estimate comes to real wall time is measured in benchmarks/, never asserted on time here.)"""
from __future__ import annotations

import json
from dataclasses import replace

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

    cfg = tl.StudyConfig(sizes=[5], strategies=[{"name": "scratch"}, {"name": "head"}], max_seeds=10)
    est = estimate_study(zoo.pretrained("cnn"), digits_target(), cfg)
    assert (est.trials_first, est.trials_max) == (2 * 3, 2 * 10)
    assert est.max_s > est.first_s
    assert json.loads(json.dumps(est.to_dict()))["trials_max"] == 20
    # The cap from the estimate: two configurations at one size, every seed to 24 well within 10 hours.
    auto = estimate_study(zoo.pretrained("cnn"), digits_target(), replace(cfg, max_seeds="auto", seed_budget="10h"))
    assert auto.trials_max == 2 * 24 and any(n.startswith("Seeds: up to 24") for n in auto.notes), auto.notes
    assert "Seeds: up to 24" in auto.text()


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


def test_the_time_left_starts_from_the_estimate_not_from_the_first_cheap_trial(monkeypatch):
    """The first trial to end is often a probe estimated at milliseconds, after seconds of start-up: the time left
    must stay near the estimate's (it once read 143 hours on the demo), then follow the measured pace."""
    from transferlab.cli import progress as pg
    from transferlab.estimate import Estimate

    clock = [0.0]
    monkeypatch.setattr(pg.time, "perf_counter", lambda: clock[0])
    bar = pg.RichProgress(plain=True)
    trial_s = {"probe": 0.001, **{f"t{i}": 4.0 for i in range(40)}}
    est = Estimate(first_s=160.001, max_s=160.001, trials_first=41, trials_max=41, steps=500, measure_s=1.0,
                   device="cpu", trial_s=trial_s, parallel=2)
    bar.on_estimate(est)
    bar.on_start(41, 41, {"title": "t"})
    assert bar._seconds_left() == pytest.approx(80.0, rel=0.01)  # the estimate's wall time, before any trial ends
    clock[0] = 3.0
    bar.on_trial_end({"strategy": "linear_probe", "trial_id": "probe", "label": "p", "n_train": 5, "seed": 0,
                      "test_acc": 0.9})
    assert 60 < bar._seconds_left() < 2 * 80  # near the estimate, not 3 s / 1 ms x 160 s
    for i in range(20):  # then twice as slow as estimated: the time left follows the measured pace
        clock[0] = 3.0 + 4.0 * (i + 1)
        bar.on_trial_end({"strategy": "scratch", "trial_id": f"t{i}", "label": "s", "n_train": 5, "seed": i,
                          "test_acc": 0.9})
    assert 1.5 * 40 < bar._seconds_left() < 1.1 * 2 * 80 / 2
