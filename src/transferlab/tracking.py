"""Experiment tracking: every trial of a study as an MLflow run or a TensorBoard event folder.

Trackers are study callbacks, attached like the progress bar. They see each trial as it finishes
(in the main process, whatever the executor), so a study's runs appear while it goes on.
Trials a resumed study reuses were logged by the invocation that ran them.
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from urllib.parse import urlparse

from transferlab.errors import UserError
from transferlab.execution import StudyCallback
from transferlab.results import StudyResult

__all__ = ["MlflowTracker", "TensorBoardTracker", "trackers", "TRACKERS"]

_EVAL_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")
_TRIAL_METRICS = ("test_acc", "test_loss", "best_val_acc", "best_step", "steps_run", "wall_s", "trainable_params")


def _name(study: dict) -> str:
    return str(study.get("source") or study.get("title") or study["model"]["spec"].get("source", "study"))


def _folder(text: str) -> str:
    return re.sub(r"[^\w.=\-]+", "_", text).strip("_")


def _key(text: str) -> str:
    """A metric or folder name from a label: MLflow keys allow letters, digits and ``_-./ :`` only."""
    return re.sub(r"[^\w.\-/ :]+", "_", text).strip("_")


def _trial_params(record: dict) -> dict:
    params = {"strategy": record["strategy"], "label": record["label"], "seed": record["seed"],
              "n_train": record["n_train"], "status": record["status"]}
    params.update({f"param.{k}": v for k, v in (record.get("params") or {}).items()})
    params.update({f"chosen.{k}": v for k, v in (record.get("chosen") or {}).items()})
    return params


def _study_params(study: dict) -> dict:
    cfg = study["config"]
    budget = cfg["budget"]
    return {"model": study["model"]["spec"].get("source", ""), "data": str(study["data"].get("name", "")),
            "sizes": ",".join(map(str, cfg["sizes"])), "seeds": str(cfg["seeds"] or f"up to {cfg['max_seeds']}"),
            "margin": cfg["margin"], "augment": cfg["augment"], "steps": budget.get("steps"), "epochs": budget.get("epochs"),
            "lrs": ",".join(map(str, budget["lrs"])), "schedule": budget["schedule"],
            "strategies": ",".join(s["name"] for s in cfg["strategies"])}


def _summary_metrics(result: StudyResult) -> dict[str, float]:
    """Per strategy and size: mean test accuracy and the gain over scratch, for the parent run."""
    out: dict[str, float] = {}
    for row in result.analysis.accuracy:
        if row.test_acc.n:
            out[_key(f"test_acc/{row.label}/n={row.n_train}")] = row.test_acc.mean
    for g in result.analysis.gains:
        if g.gain.n:
            out[_key(f"gain/{g.label}/n={g.n_train}")] = g.gain.mean
    return out


class MlflowTracker(StudyCallback):
    """A parent run per study (its design as parameters, the summary as metrics, the report as an artifact)
    and a nested run per trial (its strategy, seed, size and chosen LR as parameters, per-evaluation curves (step = optimizer step) and
    test accuracy as metrics).

    ``uri``: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///FOLDER/mlflow.db``, MLflow's local store (its
    ``./mlruns`` folder store is in maintenance mode since MLflow 3). ``mlflow ui --backend-store-uri`` opens it.
    """

    def __init__(self, folder: str | Path = ".", uri: str | None = None, experiment: str | None = None):
        self.folder, self.uri, self.experiment_name = Path(folder).resolve(), uri, experiment
        # Connected when the study begins: nothing is written before its checks.
        self.client = self.parent = self.experiment = None

    def check(self) -> None:
        """Before the study: a store the user named (MLFLOW_TRACKING_URI) is opened now, so a bad one is refused
        before the study folder exists. The default store lives in that folder and is made with it."""
        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri and urlparse(uri).scheme not in ("", "file"):  # opening a folder store would already make it
            self._connect(create=False)

    def _connect(self, create: bool = True) -> None:
        """Open the store and find the experiment; ``create``: make the experiment when it is missing (only once
        the study begins, so a refused start or a dry run writes nothing into the user's store)."""
        from mlflow.tracking import MlflowClient

        self.uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not self.uri:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.uri = f"sqlite:///{self.folder / 'mlflow.db'}"
        if urlparse(self.uri).scheme in ("", "file"):
            # MLflow's classic folder store (file:./mlruns, or a bare path), which MLflow 3 refuses unless told
            # otherwise: a user who set it keeps their runs where the rest of theirs are.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            name = self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "transferlab"
            found = self.client.get_experiment_by_name(name)
            if not create:
                return
            # Artifacts beside the database for the default store; elsewhere where the user's store puts them.
            self.experiment = found.experiment_id if found else self.client.create_experiment(
                name, artifact_location=(self.folder / "mlartifacts").as_uri() if self.uri.startswith("sqlite") else None)
        except Exception as exc:  # MlflowException and the store's own errors: the user's setting, not a bug
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"MLflow cannot open the tracking store {self.uri!r} ({first[:200]})",
                            "fix or unset MLFLOW_TRACKING_URI (unset, runs go to OUT/mlflow.db)") from None

    def on_begin(self, study: dict) -> None:
        if self.experiment is None:
            self._connect()
        run = self.client.create_run(self.experiment, run_name=_name(study), tags={"transferlab.kind": "study"})
        self.parent = run.info.run_id
        for k, v in _study_params(study).items():
            self.client.log_param(self.parent, k, v)

    def on_trial_end(self, record: dict) -> None:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(
            self.experiment, run_name=f"{record['label']} n={record['n_train']} s={record['seed']}",
            tags={"mlflow.parentRunId": self.parent, "transferlab.kind": "trial", "transferlab.trial_id": record["trial_id"]})
        rid = run.info.run_id
        metrics = [Metric(m, float(h[m]), 0, int(h["step"]))
                   for h in record.get("history") or [] for m in _EVAL_METRICS if h.get(m) is not None]
        metrics += [Metric(m, float(record[m]), 0, 0) for m in _TRIAL_METRICS if record.get(m) is not None]
        self.client.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in _trial_params(record).items()])
        self.client.set_terminated(rid, "FINISHED" if record["status"] == "ok" else "FAILED")

    def on_end(self, result: StudyResult) -> None:
        from mlflow.entities import Metric

        rec = result.analysis.recommendation
        self.client.log_batch(self.parent, metrics=[Metric(k, v, 0, 0) for k, v in _summary_metrics(result).items()])
        self.client.set_tag(self.parent, "recommendation", rec.text[:5000])
        if rec.label:
            self.client.set_tag(self.parent, "recommended", rec.label)
        for name in ("report.html", "analysis.json", "study.json", "summary.csv"):
            if result.out_dir and (result.out_dir / name).exists():
                self.client.log_artifact(self.parent, str(result.out_dir / name))
        self.client.set_terminated(self.parent)


class TensorBoardTracker(StudyCallback):
    """Event files under ``FOLDER/tensorboard/<study>/<label>/n=<n>/seed=<s>``: per-evaluation curves as scalars
    and the trial's hyperparameters with its test accuracy in the HParams tab. ``tensorboard --logdir`` opens it."""

    def __init__(self, folder: str | Path = "."):
        self.root = Path(folder) / "tensorboard"
        self.study = "study"

    def on_begin(self, study: dict) -> None:
        self.study = _folder(_name(study))

    def on_trial_end(self, record: dict) -> None:
        from torch.utils.tensorboard import SummaryWriter

        path = self.root / self.study / _folder(record["label"]) / f"n={record['n_train']}" / f"seed={record['seed']}"
        with SummaryWriter(log_dir=str(path)) as w:
            for h in record.get("history") or []:
                for m in _EVAL_METRICS:
                    if h.get(m) is not None:
                        w.add_scalar(m.replace("_", "/", 1), h[m], int(h["step"]))
            result = {f"hparam/{m}": float(record[m]) for m in ("test_acc", "best_val_acc") if record.get(m) is not None}
            hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in _trial_params(record).items()}
            w.add_hparams(hparams, result, run_name=".")


TRACKERS = {"mlflow": (MlflowTracker, "mlflow", "mlflow-skinny"),
            "tensorboard": (TensorBoardTracker, "tensorboard", "tensorboard")}


def trackers(names: list[str] | None, folder: str | Path) -> list[StudyCallback]:
    """The trackers asked for (``mlflow``, ``tensorboard``), checked before the study starts."""
    out = []
    for name in names or []:
        if name not in TRACKERS:
            raise UserError(f"unknown tracker {name!r}", f"use one of: {', '.join(TRACKERS)}")
        cls, module, package = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"--track {name} needs the {package} package",
                            "pip install 'transferlab[track]' (or pip install " + package + ")")
        tracker = cls(folder)
        if hasattr(tracker, "check"):
            tracker.check()
        out.append(tracker)
    return out
