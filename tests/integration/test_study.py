"""A study as a whole: resume after a kill, the browser view, and what the demo measures."""
from __future__ import annotations

import shutil
import subprocess

import pytest

import transferlab as tl
from transferlab.errors import UserError


def _config(**kw):
    base = dict(seeds=[0, 1], sizes=[5], budget=tl.Budget(epochs=3, patience=2, lrs=(3e-3, 1e-2)),
                strategies=[{"name": "scratch"}, {"name": "head"}, {"name": "finetune"}])
    return tl.StudyConfig(**{**base, **kw})


def test_resume_skips_finished_trials_and_matches(cnn, digits, tmp_path):
    full = tl.run_study(cnn, digits, _config(), tmp_path / "full", report=False)
    part = tmp_path / "part"
    tl.run_study(cnn, digits, _config(), part, report=False)
    lines = (part / "trials.jsonl").read_text().splitlines()
    (part / "trials.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # killed mid-write
    seen = []

    class Count(tl.StudyCallback):
        def on_start(self, total, todo, study):
            seen.append((total, todo))

    resumed = tl.run_study(cnn, digits, _config(), part, callbacks=[Count()], report=False)
    assert seen == [(6, 4)]
    acc = lambda r: {(t["label"], t["seed"]): t["test_acc"] for t in r.trials}  # noqa: E731
    assert acc(resumed) == acc(full)
    with pytest.raises(UserError, match="different study"):
        tl.run_study(cnn, digits, _config(seeds=[5]), part, report=False)


def test_a_listed_seed_set_is_run_estimated_and_resumed_as_listed(mlp, digits, tmp_path):
    """Fault: seeds = [5, 7, 9] trained seeds 0-2, and every verdict then read none of them."""
    config = _config(seeds=[5, 7, 9], strategies=[{"name": "scratch"}, {"name": "head"}])
    from transferlab.execution import estimate_study

    est = estimate_study(mlp, digits, config)
    res = tl.run_study(mlp, digits, config, tmp_path, report=False)
    assert {t["seed"] for t in res.trials} == {5, 7, 9}
    assert sorted(est.trial_s) == sorted(t["trial_id"] for t in res.trials), "the estimate plans the trials run"
    gain = res.analysis.gains[0].gain
    assert gain.n == 3 and gain.has_ci, "the look reads the listed seeds"
    # A small data set: each seed its own validation and test examples, and the report says what that covers.
    assert res.study["data"]["splits"]["per_seed"] and "draws its own validation" in res.analysis.variance_note
    assert all(t["holdout_acc"] is not None for t in res.trials)
    seen = []

    class Count(tl.StudyCallback):
        def on_start(self, total, todo, study):
            seen.append((total, todo))

    tl.run_study(mlp, digits, config, tmp_path, callbacks=[Count()], report=False)
    assert seen == [(6, 0)], "a rerun finds every listed seed done"


def test_result_converts_to_dataframe(mlp, digits):
    res = tl.run_study(mlp, digits, _config(seeds=[0]))
    df = res.to_frame()
    assert set(df["strategy"]) == {"scratch", "head", "finetune"} and df["test_acc"].between(0, 1).all()


@pytest.mark.browser
def test_report_renders_in_headless_chromium(cnn, digits, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no chromium on this machine (.ci/run installs it)")
    strategies = [{"name": "scratch"}, {"name": "head"}, {"name": "freeze_k", "params": {"k": 1}}]
    res = tl.run_study(cnn, digits, _config(sizes=[5, 20], strategies=strategies), tmp_path / "s")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
           res.report_path.resolve().as_uri()]
    try:  # a browser that never answers (no network here) says nothing about the report: skip, never fail
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    except subprocess.TimeoutExpired:
        pytest.skip("headless chromium did not answer within 300 s")
    assert 'data-ready="1"' in dom, dom[:500]
    assert 'data-errors="0"' in dom
    n = int(dom.split('data-figures="')[1].split('"')[0])
    assert n >= 4 and f'data-figures-ok="{n}"' in dom
    assert 'id="recommendation"' in dom


def test_an_automatic_seed_cap_is_recorded_and_resumed(mlp, digits, tmp_path):
    """``max_seeds = "auto"``: the cap comes from the estimate, study.json says which and why, and a rerun (or an
    older folder started at a number) resumes its own cap instead of refusing the folder as another study."""
    import json

    config = _config(seeds=None, first_seeds=1, strategies=[{"name": "scratch"}, {"name": "head"}], seed_budget="10h")
    res = tl.run_study(mlp, digits, config, tmp_path / "a", report=False)
    cap = res.study["seed_cap"]
    assert cap["auto"] and cap["max_seeds"] == 24 and "within the seed budget of 10h" in cap["why"]
    assert res.study["config"]["max_seeds"] == 24 and res.study["design"]["looks"][-1] == 24
    again = tl.run_study(mlp, digits, _config(seeds=None, first_seeds=1, strategies=config.strategies,
                                              seed_budget="1s"), tmp_path / "a", report=False)
    assert again.study["seed_cap"]["max_seeds"] == 24 and len(again.trials) == len(res.trials)
    # A folder started at a number before caps were automatic: study.json has no seed_cap.
    older = tl.run_study(mlp, digits, _config(seeds=None, first_seeds=1, max_seeds=2, strategies=config.strategies),
                         tmp_path / "b", report=False)
    study = json.loads((tmp_path / "b" / "study.json").read_text())
    assert "seed_cap" not in study and older.study["design"]["looks"][-1] == 2
    resumed = tl.run_study(mlp, digits, _config(seeds=None, first_seeds=1, strategies=config.strategies),
                           tmp_path / "b", report=False)
    assert resumed.study["config"]["max_seeds"] == 2 and len(resumed.trials) == len(older.trials)
