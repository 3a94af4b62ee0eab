"""The analysis as typed, versioned plain data: dataclasses with ``to_dict`` / ``from_dict``.

``analyze`` returns an ``Analysis``; ``analysis.json`` is its ``to_dict()``; the report, the terminal
summary and the CSV read its attributes. ``from_dict`` follows the type hints into nested results,
so ``Analysis.from_dict(json.load(f))`` rebuilds the whole tree. No torch.
"""
from __future__ import annotations

import dataclasses
from enum import Enum
import math
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from transferlab.analysis.stats import Design, Verdict
from transferlab.results import SCHEMA_VERSION

Size = Union[int, str]  # examples per class, or "all"


class Plain:
    """``to_dict`` / ``from_dict`` for a dataclass of plain values, lists, dicts and nested ``Plain``s."""

    def to_dict(self) -> dict:
        return {f.name: _out(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict | None):
        if d is None:
            return None
        hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _in(hints[k], v) for k, v in d.items() if k in names})  # unknown keys: a newer minor field


def _out(v: Any) -> Any:
    if hasattr(v, "to_dict"):
        return v.to_dict()
    if isinstance(v, (list, tuple)):
        return [_out(x) for x in v]
    if isinstance(v, dict):
        return {k: _out(x) for k, x in v.items()}
    return v


def _in(hint: Any, v: Any) -> Any:
    if v is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        typed = [a for a in args if isinstance(a, type) and hasattr(a, "from_dict")]
        if typed and v == {} and type(None) in args:
            return None  # an optional section with nothing in it
        return _in(typed[0], v) if typed and isinstance(v, dict) else v
    if origin is list:
        return [_in(args[0], x) for x in v] if args else list(v)
    if origin is dict:
        return {k: _in(args[1], x) for k, x in v.items()} if args else dict(v)
    if isinstance(hint, type) and hasattr(hint, "from_dict") and isinstance(v, dict):
        return hint.from_dict(v)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(v)
    return v


@dataclass
class Interval(Plain):
    """Mean over seeds with its 95% CI (lo, hi NaN with one seed)."""

    mean: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    sd: float = math.nan
    n: int = 0

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.lo)


@dataclass
class Comparison(Interval):
    """A paired difference (a - b over shared seeds) and its verdict, read from one interval (``analysis.stats``).

    ``mean``, ``lo`` and ``hi`` come from the same look; ``lo``/``hi`` are the simultaneous interval: at ``level``
    each, so that all the intervals of the family (``family`` of them, every look) cover together with probability
    ``coverage``.  ``ci95`` is the plain 95% interval of the same seeds, kept for readers who want it.
    """

    label: str = ""
    look: int = 0
    level: Optional[float] = None
    coverage: Optional[float] = None
    family: int = 0
    ci95: list[float] = field(default_factory=list)
    sd_floor: Optional[float] = None
    verdict: Verdict = Verdict.INCONCLUSIVE
    seeds_needed: Optional[int] = None
    dropped: int = 0  # seeds left out of the pairing because a trial of either side failed or diverged
    stopped: Optional[str] = None  # why no more seeds were run ("the cap of 10 seeds cannot decide it")
    versus: Optional[str] = None  # a race row: the configuration its estimate names the best of the others
    # One test split for the whole study: its per-example variance term, and whether it came from per-example
    # correctness ("per example") or from the accuracies alone ("bound").
    test_var: Optional[float] = None
    test_term: Optional[str] = None


@dataclass
class AccuracyRow(Plain):
    label: str
    strategy: str
    n_train: Size
    n_train_total: int = 0
    params: dict = field(default_factory=dict)
    test_acc: Interval = field(default_factory=Interval)
    val_acc: Interval = field(default_factory=Interval)  # the held-out half of validation (what ranks strategies)
    best_val_acc: float = math.nan  # its mean
    select_val_acc: float = math.nan  # the mean best on the selection half (what chose each trial's LR and step)
    trainable_params: int = 0
    total_params: int = 0  # of the deployed network (a truncated one is smaller)
    infer_ms: Optional[float] = None  # its inference time per example
    frozen_blocks: int = 0
    wall_s: float = 0.0
    seeds: list[int] = field(default_factory=list)
    not_ok: int = 0
    per_seed: list[list] = field(default_factory=list)
    per_seed_val: list[list] = field(default_factory=list)


@dataclass
class GainRow(Plain):
    label: str
    n_train: Size
    gain: Comparison = field(default_factory=Comparison)
    verdict: Verdict = Verdict.INCONCLUSIVE
    val_verdict: Optional[Verdict] = None  # the same comparison on validation, which steered the seeds


@dataclass
class SpeedupRow(Plain):
    label: str
    n_train: Size
    seeds: int = 0
    reached: int = 0
    speedup: Optional[float] = None


@dataclass
class RaceRow(Plain):
    """At one size: each configuration against the best of the others (``stats.best_of_others``)."""

    n_train: Size
    leader: str
    best: Optional[Comparison] = None  # the leader against the best of the others
    vs_leader: list[Comparison] = field(default_factory=list)


@dataclass
class Curve(Plain):
    label: str
    n_train: Size
    steps: list[int] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)


@dataclass
class SweepSize(Plain):
    n_train: Size
    n_train_total: int = 0
    status: Optional[str] = None
    better_than_scratch: list[str] = field(default_factory=list)
    equivalent_to_scratch: list[str] = field(default_factory=list)
    worse_than_scratch: list[str] = field(default_factory=list)
    inconclusive: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)  # inconclusive where the seed cap cannot decide them
    seeds_to_decide: Optional[int] = None
    scratch_acc: Optional[Interval] = None
    best_transfer: Optional[str] = None
    best_gain: Optional[Comparison] = None
    best_verdict: Optional[str] = None


@dataclass
class Sweep(Plain):
    sizes: list[SweepSize] = field(default_factory=list)
    scratch_catches_up_at: Optional[Size] = None
    text: str = ""


@dataclass
class DepthRow(Plain):
    n_train: Size
    k: int
    test_acc: Interval = field(default_factory=Interval)
    val_acc: Interval = field(default_factory=Interval)
    series: str = "freeze_k"  # the configuration apart from its depth, e.g. freeze_k(train_bn=True), surgical


@dataclass
class KeepPoint(Plain):
    """One configuration of a per-cut series (analysis/keep.py): its network keeps blocks 1..k (``removes``), or
    all of them with the first k frozen (freeze_k)."""

    n_train: Size
    series: str
    k: int
    label: str = ""
    removes: bool = True
    test_acc: Interval = field(default_factory=Interval)
    val_acc: Interval = field(default_factory=Interval)
    total_params: int = 0
    infer_ms: Optional[float] = None


@dataclass
class Smallest(Plain):
    """The smallest network decided equivalent to the validation leader at one size (None: the leader itself)."""

    n_train: Size
    leader: str
    text: str = ""
    label: Optional[str] = None
    kept: int = 0
    params: int = 0
    leader_params: int = 0
    infer_ms: Optional[float] = None
    leader_infer_ms: Optional[float] = None
    test_acc: float = math.nan
    leader_test_acc: float = math.nan
    vs_leader: Optional[Comparison] = None
    gain_verdict: Optional[Verdict] = None
    smaller_open: list[str] = field(default_factory=list)


@dataclass
class Keep(Plain):
    """Which layers to keep (seed 004): accuracy against cut, and the smallest network as good as the best."""

    curves: list[KeepPoint] = field(default_factory=list)
    smallest: list[Smallest] = field(default_factory=list)
    body_params: list[int] = field(default_factory=list)  # parameters of blocks 1..k, for k = 1..n
    blocks: list[str] = field(default_factory=list)
    text: str = ""


@dataclass
class Decided(Plain):
    better: int = 0
    worse: int = 0
    equivalent: int = 0
    inconclusive: int = 0
    total: int = 0
    decided: int = 0
    share: Optional[float] = None


@dataclass
class ProfileValidation(Plain):
    n_train: Size
    depths: list[int] = field(default_factory=list)
    kendall_tau: dict[str, Optional[float]] = field(default_factory=dict)


@dataclass
class MovedBlock(Plain):
    block: str
    weight_change: float = 0.0
    cka: float = math.nan


@dataclass
class Moved(Plain):
    label: str
    n_train: Size
    blocks: list[MovedBlock] = field(default_factory=list)


@dataclass
class FirstEpochs(Plain):
    n_train: Size
    strategies: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # label -> block -> measure


@dataclass
class Failed(Plain):
    label: str
    n_train: Size
    seed: int
    status: str
    error: Optional[str] = None
    diverged_step: Optional[int] = None


@dataclass
class Placement(Plain):
    """Where the task sits in the CS231n data-size x similarity table, and the table's rule there."""

    data: str
    per_class: float
    similarity: str
    rule: Optional[str] = None
    unfreeze: Optional[str] = None  # what the rule trains: "fewer" (top features), "earlier" (earlier features) or "all"
    cell: list[str] = field(default_factory=list)
    similarity_detail: Optional[dict] = None


@dataclass
class UndecidedRow(Plain):
    """An inconclusive comparison with scratch, and what it would take to decide it (the recommendation's table)."""

    label: str
    n_train: Size
    mean: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0
    seeds_needed: Optional[int] = None
    stopped: Optional[str] = None
    minutes: Optional[float] = None
    what: str = ""  # what would decide it, in words (analysis.recommend.decide_phrase)


@dataclass
class Recommendation(Plain):
    text: str  # at most three sentences, what was decided first
    details: str = ""  # the rest: contenders, speed-up, the size sweep, the CS231n table
    undecided: list[UndecidedRow] = field(default_factory=list)
    label: Optional[str] = None
    strategy: Optional[str] = None
    params: dict = field(default_factory=dict)
    n_train: Optional[Size] = None
    leader: Optional[str] = None
    equivalent_to_leader: list[str] = field(default_factory=list)
    contenders: list[str] = field(default_factory=list)
    gain_verdict: Optional[str] = None
    placement: Optional[Placement] = None
    agrees_with_table: Optional[bool] = None


@dataclass
class ConvergenceRow(Plain):
    """How the trials of one configuration at one size ended (analysis/convergence.py)."""

    label: str
    n_train: Size
    trials: int = 0
    converged: int = 0
    not_converged: dict[str, int] = field(default_factory=dict)  # stop reason -> trials
    grid_extended: int = 0
    at_edge: int = 0
    steps: int = 0  # the mean step budget of one candidate

    @property
    def share(self) -> float:
        return self.converged / self.trials if self.trials else float("nan")


@dataclass
class Analysis(Plain):
    """Everything ``analyze`` concludes from a study's records; ``analysis.json`` is its ``to_dict()``."""

    recommendation: Recommendation
    design: Design = field(default_factory=Design)
    decided: Decided = field(default_factory=Decided)
    race: list[RaceRow] = field(default_factory=list)
    accuracy: list[AccuracyRow] = field(default_factory=list)
    gains: list[GainRow] = field(default_factory=list)
    speedups: list[SpeedupRow] = field(default_factory=list)
    curves: dict[str, Curve] = field(default_factory=dict)
    sweep: Sweep = field(default_factory=Sweep)
    depth: list[DepthRow] = field(default_factory=list)
    keep: Optional[Keep] = None
    zero_shot: Optional[dict] = None  # the zero-shot trial's record
    failed: list[Failed] = field(default_factory=list)
    profile_validation: Optional[ProfileValidation] = None
    moved: list[Moved] = field(default_factory=list)
    first_epochs: Optional[FirstEpochs] = None
    slow_start_flags: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)  # three lines first: did transfer help, what to use, how sure
    convergence: list[ConvergenceRow] = field(default_factory=list)
    capacity_notes: list[str] = field(default_factory=list)  # a head below the probe on the same features, and why
    variance_note: str = ""  # which sources of variance the intervals cover
    schema: int = SCHEMA_VERSION

    def gain(self, label: str, n_train: Size) -> GainRow | None:
        return next((g for g in self.gains if g.label == label and g.n_train == n_train), None)

    def converged(self, label: str, n_train: Size) -> ConvergenceRow | None:
        return next((c for c in self.convergence if c.label == label and c.n_train == n_train), None)

    def converged_share(self) -> float | None:
        total = sum(c.trials for c in self.convergence)
        return sum(c.converged for c in self.convergence) / total if total else None

    def speedup(self, label: str, n_train: Size) -> SpeedupRow | None:
        return next((s for s in self.speedups if s.label == label and s.n_train == n_train), None)
