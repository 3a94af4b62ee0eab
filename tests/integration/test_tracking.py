"""Tracking with the real libraries: what a study logs to MLflow and TensorBoard is read back and checked."""
from __future__ import annotations

import pytest

import transferlab as tl
from tests.conftest import cli
from tests.integration.test_cli import _one_line_error

pytestmark = pytest.mark.slow  # real MLflow and TensorBoard stores: with the slow tests, which CI runs too
pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")


def _config():
    return tl.StudyConfig(seeds=[0, 1], sizes=[5], budget=tl.Budget(epochs=3, patience=2, lrs=(3e-3, 1e-2)),
                          strategies=[{"name": "scratch"}, {"name": "head"}])


def test_mlflow_and_tensorboard_hold_every_trial(cnn, digits, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "study"
    res = tl.run_study(cnn, digits, _config(), out, callbacks=[tl.MlflowTracker(out), tl.TensorBoardTracker(out)],
                       meta={"source": "cnn"})
    trials = [r for r in res.trials if r["strategy"] != "zero_shot"]
    assert len(trials) == 4

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("transferlab")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("transferlab.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("transferlab.kind") == "trial"]
    assert len(parents) == 1 and len(children) == len(res.trials)
    parent = parents[0]
    assert parent.info.run_name == "cnn" and parent.data.params["sizes"] == "5"
    assert parent.data.tags["recommended"] == res.analysis.recommendation.label
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"report.html", "analysis.json"}
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    for rec in trials:
        run = next(c for c in children if c.data.tags["transferlab.trial_id"] == rec["trial_id"])
        assert run.data.params["label"] == rec["label"] and int(run.data.params["seed"]) == rec["seed"]
        assert run.data.metrics["test_acc"] == pytest.approx(rec["test_acc"])
        curve = client.get_metric_history(run.info.run_id, "val_acc")
        curve = sorted(curve, key=lambda m: m.step)
        assert [m.step for m in curve] == [h["step"] for h in rec["history"]]
        assert [m.value for m in curve] == pytest.approx([h["val_acc"] for h in rec["history"]])

    rec = next(r for r in trials if r["label"] == "scratch" and r["seed"] == 1)
    ev = EventAccumulator(str(out / "tensorboard" / "cnn" / "scratch" / "n=5" / "seed=1"))
    ev.Reload()
    assert [e.step for e in ev.Scalars("val/acc")] == [h["step"] for h in rec["history"]]
    assert [e.value for e in ev.Scalars("val/acc")] == pytest.approx([h["val_acc"] for h in rec["history"]])
    assert len(list((out / "tensorboard" / "cnn").glob("*/n=5/seed=*"))) == len(trials)


def test_unknown_tracker_is_one_line(tmp_path):
    res = cli("run", "--model", "demo:cnn", "--data", "demo:digits", "--out", str(tmp_path / "s"), "--track", "wandb")
    _one_line_error(res, "unknown tracker 'wandb'", "mlflow, tensorboard")
    assert not (tmp_path / "s").exists()


def test_the_classic_mlflow_folder_store_works(tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI=file:./mlruns, the setting many users still have: MLflow 3 refuses its folder store unless
    told otherwise, so transferlab tells it; the runs land in ./mlruns."""
    from mlflow.tracking import MlflowClient

    res = cli("run", "--model", "demo:cnn", "--data", "demo:digits", "--seeds", "1", "--sizes", "5", "--steps", "10",
              "--strategies", "scratch,head", "--out", "study", "--track", "mlflow", cwd=tmp_path,
              env={"MLFLOW_TRACKING_URI": "file:./mlruns"})
    assert res.returncode == 0, res.stderr[-2000:]
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    runs = client.search_runs([client.get_experiment_by_name("transferlab").experiment_id])
    assert sum(r.data.tags.get("transferlab.kind") == "trial" for r in runs) == 2
    assert not (tmp_path / "study" / "mlflow.db").exists()
