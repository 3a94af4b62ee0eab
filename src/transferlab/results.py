"""Results as versioned plain data: trial specs and records, and the JSONL store.

Nothing here imports torch, so reports and analyses run from the files alone.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from transferlab.errors import UserError

SCHEMA_VERSION = 6  # of study.json and the records; 2: preflight measurements under their own names; 3: step budgets;
# 4: a held-out half of validation scores the chosen model (``holdout_acc``), simultaneous intervals; 5: one test split
# for the study by default, per-example test correctness (``test_correct``), verdicts per target size; 6: each run
# draws its dropout masks from its own key (``rng.py``), not torch's shared stream


def label(name: str, params: dict) -> str:
    """Human and grouping key of a strategy configuration, e.g. ``freeze_k(k=2)``."""
    inner = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    return f"{name}({inner})" if inner else name


def pack_correct(rows) -> str:
    """Per-example correctness as text: the bits, little-endian in each byte, base64 (135 examples: 24 characters)."""
    bits = bytearray((len(rows) + 7) // 8)
    for i, hit in enumerate(rows):
        if hit:
            bits[i // 8] |= 1 << (i % 8)
    return f"{len(rows)}:" + base64.b64encode(bytes(bits)).decode()


def unpack_correct(text: str | None) -> list[int] | None:
    """The 0/1 list ``pack_correct`` wrote, or None."""
    if not text:
        return None
    n, data = text.split(":", 1)
    raw = base64.b64decode(data)
    return [(raw[i // 8] >> (i % 8)) & 1 for i in range(int(n))]


@dataclass(frozen=True)
class TrialSpec:
    """What to run: one strategy configuration, one seed, one target size."""

    strategy: str
    params: dict
    seed: int
    n_train: int | str  # examples per class, or "all"
    label: str = ""  # display and grouping name; the strategy's non-default parameters
    net: str = ""  # which network the strategy starts from, when a run has several (layers: "A" or "B")

    def __post_init__(self):
        if not self.label:
            object.__setattr__(self, "label", label(self.strategy, self.params))

    @property
    def trial_id(self) -> str:
        parts = [self.strategy, self.params, self.seed, self.n_train] + ([self.net] if self.net else [])
        key = json.dumps(parts, sort_keys=True)
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrialRecord:
    """What came out of one trial. One line of ``trials.jsonl``."""

    trial_id: str
    strategy: str
    label: str
    params: dict
    seed: int
    n_train: int | str
    n_train_total: int
    status: str  # ok | diverged | failed
    test_acc: float | None = None
    test_loss: float | None = None
    # Whether each test example (in the test split's order) was classified correctly, packed (``pack_correct``):
    # with one test split for the whole study it gives the interval's per-example term (analysis.stats).
    test_correct: str | None = None
    best_val_acc: float | None = None  # on the selection half of validation, which chose the LR and the step
    holdout_acc: float | None = None  # the chosen model on the held-out half of validation, which chose nothing
    best_step: int | None = None  # the checkpoint: optimizer steps at the best validation evaluation
    chosen: dict = field(default_factory=dict)  # the hyperparameters picked on validation
    candidates: list[dict] = field(default_factory=list)  # each tried value and its validation score
    history: list[dict] = field(default_factory=list)  # per evaluation (fitloop.EvalLog), of the chosen candidate
    wall_s: float = 0.0
    steps_run: int = 0  # optimizer steps over all candidates (the trial's compute)
    budget_steps: int = 0  # the chosen candidate's step budget (training.Budget.plan)
    converged: bool | None = None  # the chosen run ended converged (validation plateau, flat training loss)
    stop: str = ""  # why the chosen run ended: converged | plateau | limit | diverged ("" for a closed-form fit)
    grid_extended: list[str] = field(default_factory=list)  # edges of the grid extended: "below", "above"
    chosen_at_edge: bool = False  # the choice still lies on an edge of the (extended) grid
    trainable_params: int = 0
    total_params: int = 0  # of the network one deploys: the pretrained one's, or a truncated one's
    infer_ms: float | None = None  # that network's inference time per example (preprocessed inputs, batch of 64)
    frozen_blocks: int = 0
    cached: bool = False
    members: str = ""  # how the candidates trained: "batched: N members", or "one at a time: why" (members.py)
    diverged_step: int | None = None
    error: str | None = None
    dynamics: list[dict] = field(default_factory=list)  # first evaluation periods: per-block gradient norm, update ratio
    moved: list[dict] = field(default_factory=list)  # per block: weight change and CKA to the pretrained activations
    schema: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)  # keys this version does not know (e.g. "shared_from"), kept as they were

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d

    @classmethod
    def from_dict(cls, d: dict | TrialRecord) -> TrialRecord:
        """A record read back from ``trials.jsonl`` (or built by a test): typed, unknown keys kept in ``extra``."""
        if isinstance(d, TrialRecord):
            return d
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in d.items() if k in names}, extra={k: v for k, v in d.items() if k not in names})

    @property
    def trained(self) -> bool:
        """A finished trial of a strategy (not the zero-shot reading of the source head)."""
        return self.status == "ok" and self.strategy != "zero_shot"

    @property
    def val_score(self) -> float:
        """The validation number that ranks a trial: its chosen model on the held-out half of validation, which
        chose nothing (``data.base.hold_out``); without one (validation too small to halve) the selection half's
        best, a maximum over everything the trial tried."""
        return self.best_val_acc if self.holdout_acc is None else self.holdout_acc


def as_records(records) -> list[TrialRecord]:
    """Records as typed ``TrialRecord``s (dicts converted, records kept): what every analysis reads."""
    return [TrialRecord.from_dict(r) for r in records]


class TrialStore:
    """Append-only JSONL. Each record is one ``write`` of one line, then fsync.

    A process killed mid-write can leave at most a partial last line; ``load``
    ignores it and the next ``append`` cuts it off, so the store stays valid.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> list[dict]:
        if not self.path.exists():
            return []
        records = []
        with open(self.path, "rb") as f:
            for line in f.read().split(b"\n"):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a torn last line from an interrupted write
        return records

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(keep)

    def append(self, record: dict[str, Any]) -> None:
        self._truncate_torn_tail()
        line = (json.dumps(record, sort_keys=True, allow_nan=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while line:  # a short write (a filling disk) writes the rest, or raises
                line = line[os.write(fd, line):]
            os.fsync(fd)
        except OSError as exc:  # a full disk, say: name the file (a torn line is cut off by the next append)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
        finally:
            os.close(fd)

    def done_ids(self) -> set[str]:
        return {r["trial_id"] for r in self.load() if r.get("status") in ("ok", "diverged")}


def _from_4(study: dict) -> dict:
    """Schema 4 redrew test with validation wherever it redrew splits per seed: say so in 5's terms."""
    if "data" not in study:  # sources.json, layers.json: nothing about splits
        return {**study, "schema": 5}
    data = dict(study.get("data") or {})
    splits = dict(data.get("splits") or {})
    splits.setdefault("test_per_seed", bool(splits.get("per_seed")))
    return {**study, "data": {**data, "splits": splits}, "schema": 5}


def _from_5(study: dict) -> dict:
    """Schema 5 drew dropout masks from torch's one shared stream: a study (not a record) says so, so such a study is
    read and reported as it is but not resumed where dropout trains (``pipeline.check_folder``)."""
    if "config" not in study:
        return {**study, "schema": 6}
    return {**study, "dropout_masks": "shared", "schema": 6}


UPGRADES: dict = {4: _from_4, 5: _from_5}  # version -> the function that lifts it one version
# Studies before 3 trained on epoch budgets; studies before 4 chose each trial's LR and step on the same validation
# examples that then ranked the strategies.  Neither is comparable with today's trials, so they are neither resumed
# nor re-analysed by this release.
OLDEST_READ = 4
WHY_NOT_READ = {1: "trained on epoch budgets", 2: "trained on epoch budgets",
                3: "ranked strategies on the validation examples that had chosen their learning rates"}


def check_schema(study: dict, where: str) -> dict:
    """Read any version this release knows (upgrading older ones in memory); refuse others in one line."""
    version = study.get("schema", 1)
    if isinstance(version, int) and 1 <= version < OLDEST_READ:
        raise UserError(f"{where} was written by an earlier transferlab (schema {version}) that {WHY_NOT_READ[version]}, "
                        "which this one does not mix with its own trials", "rerun the study into a new --out folder")
    if not isinstance(version, int) or version > SCHEMA_VERSION or version < 1:
        raise UserError(f"{where} was written by another transferlab version (schema {version!r}; this one reads "
                        f"{OLDEST_READ} to {SCHEMA_VERSION})", "upgrade transferlab (pip install -U transferlab), or rerun the study "
                        "into a new --out folder")
    while version < SCHEMA_VERSION:
        study, version = UPGRADES[version](study), version + 1
    return study


def read_study(out_dir: str | Path) -> dict:
    """``study.json`` of a study folder, schema checked."""
    path = Path(out_dir) / "study.json"
    if not path.exists():
        raise UserError(f"{out_dir} is not a study folder (no study.json)", "point to the folder a study wrote with --out")
    try:
        study = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})", "rerun the study to rewrite it") from None
    if not isinstance(study, dict):
        raise UserError(f"{path} is not a study description", "rerun the study into a new --out folder")
    return check_schema(study, str(path))


def temp_beside(path: str | Path) -> Path:
    """A fresh temporary file name in ``path``'s folder, unique to this writer (two writers, say a study's last write
    and ``transferlab report``, never share one), for a write that ends in ``os.replace``."""
    import uuid

    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    with open(tmp, "x"):  # made new, with the user's umask (mkstemp's would be private to them)
        pass
    return tmp


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a reader sees the old file or the new one, never a part."""
    tmp = temp_beside(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


@dataclass
class StudyResult:
    """The records of a study, its resolved config and its analyses."""

    out_dir: Path | None
    study: dict
    trials: list[dict]
    analysis: Any  # analysis.types.Analysis
    report_path: Path | None = None

    def to_frame(self):
        import pandas as pd

        rows = [{k: v for k, v in t.items() if k not in ("history", "candidates")} for t in self.trials]
        return pd.DataFrame(rows)

    @classmethod
    def load(cls, out_dir: str | Path) -> StudyResult:
        from transferlab.analysis import analyze

        out_dir = Path(out_dir)
        study = read_study(out_dir)
        trials = TrialStore(out_dir / "trials.jsonl").load()
        report = out_dir / "report.html"
        return cls(out_dir, study, trials, analyze(trials, study), report if report.exists() else None)
