"""--time-budget: the plan cut down, in a known order, until its worst case fits (timebudget.py).

The planner's arithmetic is checked on a cost table (``plan_costs`` replaced by a known-answer function over the
real plan's trials); one study runs end to end with a plan that had to be cut."""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from tests.conftest import invoke
from transferlab.config import StudyConfig
from transferlab.errors import UserError
from transferlab.strategies.base import from_spec
from transferlab.timebudget import TimePlan, auto_seed_cap, fit_to_time, parse_duration
from transferlab.training import Budget


@pytest.mark.parametrize("text,seconds", [("30m", 1800), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("2 h", 7200),
                                          ("45min", 2700)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "abc", "0m", "-5m", "30x", "m", ""])
def test_bad_durations_are_refused(text):
    with pytest.raises(UserError):
        parse_duration(text)


def test_a_bad_time_budget_is_one_line_and_exit_2():
    code, out, err = invoke("run", "--model", "demo:mlp", "--data", "demo:digits", "--time-budget", "30", "--dry-run")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "30m" in err and "Traceback" not in err


# Seconds of one trial: by strategy, times its size's factor, halved by halving, scaled by the step floor.
SECONDS = {"scratch": 10.0, "head": 1.0, "finetune": 10.0, "freeze_k(k=1)": 8.0, "freeze_k(k=3)": 3.0}
SIZE = {5: 1.0, 20: 1.5, "all": 3.0}


def _fake_costs(prep, configs):
    from transferlab.execution import plan

    def trial(config, spec) -> float:
        halving = 0.6 if config.halving else 1.0
        return SECONDS[spec.label] * SIZE[spec.n_train] * halving * config.budget.min_steps / 500

    def cost(config, cfgs):
        worst = plan(config, cfgs)
        first = plan(config, cfgs, config.seed_order()[: config.looks()[0]])
        labels: dict = {}
        for s in worst:
            labels[s.label] = labels.get(s.label, 0.0) + trial(config, s)
        return sum(trial(config, s) for s in worst), sum(trial(config, s) for s in first), labels

    return cost


@pytest.fixture()
def prep(monkeypatch, cnn):
    monkeypatch.setattr("transferlab.estimate.plan_costs", _fake_costs)
    config = StudyConfig(sizes=[5, 20, "all"], strategies=[{"name": n} for n in ("scratch", "head", "finetune")],
                         max_seeds=10)  # resolved, as execution._seed_cap hands it to the planner
    configs = [from_spec("scratch"), from_spec("head"), from_spec("finetune"), from_spec("freeze_k", {"k": 1}),
               from_spec("freeze_k", {"k": 3})]
    profile = {"cuts": [{"k": 1, "probe_acc": 0.5}, {"k": 2, "probe_acc": 0.7}, {"k": 3, "probe_acc": 0.9}]}
    return SimpleNamespace(config=config, backbone=cnn, device="cpu", measurements={"profile": profile}), configs


def test_a_plan_that_fits_is_kept_whole(prep):
    p, configs = prep
    config, kept, plan = fit_to_time(p, configs, "10h")
    assert kept == configs and config == p.config and plan.dropped == []
    assert "whole plan fits" in plan.text()


def test_the_plan_is_cut_in_order_and_scratch_stays(prep):
    p, configs = prep
    # As given: 10 seeds x (10 + 1 + 10 + 8 + 3) x (1 + 1.5 + 3) = 1760 s.
    config, kept, plan = fit_to_time(p, configs, "60s")
    whats = [d["what"] for d in plan.dropped]
    assert plan.before_s == pytest.approx(1760)
    assert whats[0] == "max_seeds 10 -> 3"
    assert whats[1] == "every LR candidate to the end" and config.halving
    assert whats[2:4] == ["size all per class", "size 20 per class"]  # the dearest first; the smallest stays
    assert config.sizes == [5]
    # 3 seeds x 32 x 0.6 = 57.6 s at one size: fits after the sizes, so no strategy and no floor is cut.
    assert plan.estimate_s == pytest.approx(57.6) and len(whats) == 4
    assert [s.label for s in kept] == [s.label for s in configs]
    config, kept, plan = fit_to_time(p, configs, "15s")  # now the floor, then strategies
    whats = [d["what"] for d in plan.dropped]
    assert whats[4:6] == ["step floor 500 -> 250", "step floor 250 -> 125"]
    assert config.budget.min_steps == 125
    # 3 x 0.6 x 0.25 = 0.45 s per unit; 32 units = 14.4 s: fits at floor 125 with every strategy.
    assert plan.estimate_s <= 15 and "scratch" in [s.label for s in kept]
    config, kept, plan = fit_to_time(p, configs, "5s")
    labels = [s.label for s in kept]
    assert "scratch" in labels and config.budget.min_steps == 100
    # Dropped by least promise per second: finetune (0.9 / 10) before freeze_k(k=1) (0.5 / 8)? 0.09 > 0.0625, so
    # freeze_k(k=1) goes first; head (0.9 / 1) is the most promising per second and stays.
    gone = [d["what"] for d in plan.dropped if d["why"] == "least promise per second"]
    assert gone[0] == "freeze_k(k=1)" and "head" in labels
    assert plan.estimate_s <= 5


def test_a_budget_below_the_smallest_study_is_refused(prep):
    p, configs = prep
    with pytest.raises(UserError, match="less than the smallest study"):
        fit_to_time(p, configs, "1s")


def test_a_rerun_resumes_the_stored_plan_without_measuring(prep, monkeypatch):
    p, configs = prep
    config, kept, plan = fit_to_time(p, configs, "15s")

    def refuse(*a):
        raise AssertionError("a rerun must not re-plan")

    monkeypatch.setattr("transferlab.estimate.plan_costs", refuse)
    again, kept2, plan2 = fit_to_time(p, configs, "15s", stored=json.loads(json.dumps(plan.to_dict())))
    assert (again.sizes, again.max_seeds, again.halving, again.budget.min_steps) == (
        config.sizes, config.max_seeds, config.halving, config.budget.min_steps)
    assert [s.label for s in kept2] == [s.label for s in kept] and isinstance(plan2, TimePlan)


def test_a_fitted_study_records_and_reports_its_plan(monkeypatch, mlp, digits, tmp_path):
    from transferlab.execution import run_study

    def costs(prep, configs):
        def cost(config, cfgs):  # 100 s per size and configuration: only one size of two fits 250 s
            labels = {s.label: 100.0 * len(config.sizes) for s in cfgs}
            return sum(labels.values()), sum(labels.values()), labels
        return cost

    monkeypatch.setattr("transferlab.estimate.plan_costs", costs)
    cfg = StudyConfig(strategies=["scratch", "head"], sizes=[5, 10], seeds=[0], estimate=False,
                      budget=Budget(steps=10, patience=2, batch_size=16, lrs=(1e-2,)), halving=True, time_budget="250s")
    result = run_study(mlp, digits, replace(cfg), out=tmp_path)
    study = json.loads((tmp_path / "study.json").read_text())
    assert study["time_plan"]["kept"]["sizes"] == [5]
    assert [d["what"] for d in study["time_plan"]["dropped"]] == ["size 10 per class"]
    assert {t["n_train"] for t in result.trials if t["strategy"] != "zero_shot"} == {5}
    assert "Fitted to the time budget of 250s" in (tmp_path / "report.html").read_text()

    def refuse(*a):
        raise AssertionError("a rerun resumes the stored plan, it does not measure a new one")

    monkeypatch.setattr("transferlab.estimate.plan_costs", refuse)
    again = run_study(mlp, digits, replace(cfg), out=tmp_path)  # the folder holds the fitted config: resumed
    assert again.study["run"]["trials_run"] == 0 and len(again.trials) == len(result.trials)


def test_worker_processes_share_the_budget(prep):
    """Trials in 2 worker processes take half the wall time: the plan is weighed against the clock, not the sum."""
    p, configs = prep
    two = SimpleNamespace(**{**vars(p), "config": replace(p.config, workers=2, executor="process")})
    one_config, _, alone = fit_to_time(p, configs, "15s")
    two_config, _, shared = fit_to_time(two, configs, "15s")
    assert shared.before_s == pytest.approx(1760 / 2)
    # Alone the floor must fall to 125 steps (14.4 s); shared, 250 (28.8 s of trials in two workers) fits.
    assert one_config.budget.min_steps == 125 and two_config.budget.min_steps == 250
    assert shared.estimate_s == pytest.approx(14.4) and len(shared.dropped) == len(alone.dropped) - 1


# The automatic seed cap: the largest of 10, 12, 24 whose worst case fits the seed budget. The three strategies at the
# three sizes cost (10 + 1 + 10) x (1 + 1.5 + 3) = 115.5 s per seed: 1155 s at 10 seeds, 1386 s at 12, 2772 s at 24.
@pytest.mark.parametrize("budget,cap", [("10h", 24), ("30m", 12), ("20m", 10), ("1m", 10)])
def test_an_automatic_seed_cap_is_the_largest_whose_worst_case_fits(prep, budget, cap):
    p, _ = prep
    configs = [from_spec(n) for n in ("scratch", "head", "finetune")]
    p.config = replace(p.config, max_seeds="auto", seed_budget=budget)
    config, note = auto_seed_cap(p, configs, None)
    assert config.max_seeds == note["max_seeds"] == cap and config.looks()[-1] == cap
    assert note["worst_s"] == {"10": 1155.0, "12": 1386.0, "24": 2772.0}
    assert ("past the seed budget" in note["why"]) == (budget == "1m")


def test_a_seed_cap_is_resumed_or_kept_as_given(prep):
    p, _ = prep
    configs = [from_spec("scratch")]
    p.config = replace(p.config, max_seeds="auto", seed_budget="10h")
    config, note = auto_seed_cap(p, configs, {"auto": True, "max_seeds": 12, "why": "started so"})
    assert config.max_seeds == 12 and note["why"] == "started so"  # a rerun resumes its folder's cap
    p.config = replace(p.config, max_seeds=6)
    assert auto_seed_cap(p, configs, None) == (p.config, None)  # a number given is the cap
    p.config = replace(p.config, max_seeds="auto", time_budget="1h")
    config, note = auto_seed_cap(p, configs, None)
    assert config.max_seeds == 24 and "time budget" in note["why"]  # the planner trims seeds from the largest cap
    config, kept, plan = fit_to_time(SimpleNamespace(**{**vars(p), "config": config}), configs, "10h")
    assert config.max_seeds == 24 and plan.dropped == []  # a budget that fits them all keeps 24 seeds
