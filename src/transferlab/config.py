"""StudyConfig: what a study runs. Plain dataclasses, read from TOML; CLI flags override."""
from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from transferlab.errors import UserError, closest
from transferlab.timebudget import AUTO_CAPS, parse_duration
from transferlab.training import Budget

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXECUTORS = ("inline", "process", "ray")
# "auto" sizes: these, less those the data cannot fill (the report says which were dropped and why).
DEFAULT_SIZES: tuple[int | str, ...] = (5, 20, 50, "all")

DEFAULT_STRATEGIES: tuple[dict, ...] = (
    {"name": "scratch"},
    {"name": "linear_probe", "params": {"kind": "logreg"}},
    {"name": "linear_probe", "params": {"kind": "svm"}},
    {"name": "head", "params": {"depth": 2}},
    {"name": "freeze_k"},
    {"name": "freeze_k", "params": {"train_bn": True}},  # left out, with the reason, for a model without BatchNorm
    {"name": "bn_adapt"},
    {"name": "finetune", "params": {"body_lr_mult": 0.1}},
    {"name": "lp_ft"},
    {"name": "gradual"},
)


def parse_strategy(text: str) -> dict:
    """``"head"`` or ``"truncate(n=2, tune=true)"`` -> ``{"name": ..., "params": {...}}``. Values read as JSON when
    they parse (numbers, true/false, lists), else as text (``cut=each``)."""
    import json

    name, paren, rest = text.strip().partition("(")
    if not paren:
        return {"name": name.strip()}
    if not rest.endswith(")"):
        raise UserError(f"strategy '{text}' does not close its parenthesis", "write it like truncate(n=2, tune=true)")
    params = {}
    for pair in split_strategies(rest[:-1]):  # the same top-level split: a list value keeps its commas
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"strategy '{text}': '{pair}' is not key=value", "write it like truncate(n=2, tune=true)")
        try:
            params[key.strip()] = json.loads(value.strip())
        except json.JSONDecodeError:
            params[key.strip()] = value.strip()
    return {"name": name.strip(), "params": params}


def split_strategies(text: str) -> list[str]:
    """Comma-separated strategies, commas inside a strategy's parentheses (or a list's brackets) kept:
    ``scratch,truncate(n=2, tune=true)``."""
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += {"(": 1, ")": -1, "[": 1, "]": -1, "{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    return [x.strip() for x in [*items, cur] if x.strip()]


@dataclass
class StudyConfig:
    """Everything that defines a study's results (``workers``, ``executor`` and ``cache`` only change speed)."""

    strategies: list[dict] = field(default_factory=lambda: [dict(s) for s in DEFAULT_STRATEGIES])
    # None: a sequential study (``first_seeds``, then more seeds, up to ``max_seeds``, only where still open).
    # A list (or ``--seeds N``): a fixed design that runs exactly these seeds for every configuration.
    seeds: list[int] | None = None
    first_seeds: int = 3
    # The cap of a sequential study: a number, or "auto": the largest of timebudget.AUTO_CAPS (10 at least) whose
    # worst case (every verdict open to the last seed) the cost estimate puts within ``seed_budget``; cheap models
    # get more seeds, where more seeds decide more.
    max_seeds: int | str = "auto"
    seed_budget: str = "10m"
    margin: float = 0.01  # |accuracy difference| below this is "equivalent" (0.01 = 1 pp)
    alpha: float = 0.05  # family-wise error rate of the verdicts at each target size
    augment: str = "auto"  # "auto" (the data's label-preserving default), "none", or e.g. "crop,flip"
    augment_views: int = 8  # augmented views of each training example (see data.augment)
    # Successive halving of the LR candidates inside a trial. Off by default: on the demo it pruned the smallest LR
    # at its first rung in 4 of 24 trials where, trained to the end, that LR won (slow starters lose early rungs).
    halving: bool = False
    # Validation, held-out and test examples: "auto" (for splits made here with under data.base.PER_SEED_BELOW test
    # examples each seed draws its own validation and held-out examples; one test split for the study), "per_seed"
    # (test redrawn per seed too) or "fixed" (see data.base.resplit).
    splits: str = "auto"
    # Target examples per class. "auto": DEFAULT_SIZES less those larger than the smallest class (pipeline.fit_sizes);
    # sizes given explicitly are all run, and one the data cannot fill is refused.
    sizes: list[int | str] | str = "auto"
    budget: Budget = field(default_factory=Budget)
    # Fit the study to this much time ("30m", "2h"): fewer seeds, sizes and strategies until the estimate fits
    # (timebudget.py). None: run the plan as given.
    time_budget: str | None = None
    depths: str | list[int] = "all"  # freeze_k depths: "all", "auto" (chosen by the profile) or a list
    profile: bool = True  # per-layer transferability scores before training
    estimate: bool = True  # time training per trainable suffix and multiply out the plan (estimate.py)
    cache: bool = True
    cache_memory_mb: int = 2048  # activations beyond this go to memory-mapped files
    cache_fp16: bool = False  # store cached activations in half precision (not exact)
    workers: int | str = 1  # or "auto": from the model's size and the usable cores (threads.auto_workers)
    # Train each trial's LR candidates as one batched model (members.py): "auto" (on a GPU), true or false.
    batch_members: bool | str = "auto"
    executor: str = "inline"  # inline | process | ray
    device: str = "auto"
    ray_address: str | None = None

    def __post_init__(self):
        self._check_types()
        if isinstance(self.seeds, int):
            self.seeds = list(range(self.seeds))
        if isinstance(self.budget, dict):
            self.budget = budget_from_dict(self.budget)
        if not isinstance(self.budget, Budget):
            raise UserError(f"budget {self.budget!r} is not a table of budget settings", "use [study.budget] with e.g. min_steps = 500")
        self.strategies = [s if isinstance(s, dict) else parse_strategy(s) for s in self.strategies]
        if not (self.depths in ("all", "auto") or isinstance(self.depths, list) and self.depths and all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in self.depths)):
            raise UserError(f"depths {self.depths!r} is not 'all', 'auto' or a list of k", 'use depths = "auto" or [1, 2]')
        if self.sizes != "auto" and (not isinstance(self.sizes, list) or not self.sizes):
            raise UserError(f"sizes {self.sizes!r} is not a list of examples per class", 'use sizes like [5, 20, 50, "all"], or "auto"')
        for s in self.sizes if self.sizes != "auto" else []:
            if s != "all" and not (isinstance(s, int) and not isinstance(s, bool) and s > 0):
                raise UserError(f"target size {s!r} is not a positive whole number of examples per class", "use sizes like [5, 20, 50, \"all\"]")
        if self.seeds is not None and len(self.seeds) < 1:
            raise UserError("a study needs at least one seed", "use seeds = 3 or more, or leave seeds out for a sequential study")
        if self.seeds is not None and (len(set(self.seeds)) != len(self.seeds)
                                       or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds)):
            raise UserError(f"seeds {self.seeds} are not distinct whole numbers of at least 0", "use seeds = [0, 1, 2], or seeds = 3")
        if not (self.max_seeds == "auto" or isinstance(self.max_seeds, int) and not isinstance(self.max_seeds, bool)):
            raise UserError(f"max_seeds {self.max_seeds!r} is not a whole number or \"auto\"", 'use max_seeds = 10, or "auto"')
        if not 1 <= self.first_seeds <= (AUTO_CAPS[-1] if self.max_seeds == "auto" else self.max_seeds):
            raise UserError(f"first_seeds {self.first_seeds} is not between 1 and max_seeds {self.max_seeds}",
                            "use for example first_seeds = 3, max_seeds = 10")
        if not 0 < self.margin < 1:
            raise UserError(f"margin {self.margin} is not an accuracy difference between 0 and 1", "use margin = 0.01 for 1 pp")
        if not 0 < self.alpha < 0.5:
            raise UserError(f"alpha {self.alpha} is not an error rate between 0 and 0.5", "use alpha = 0.05")
        if self.executor not in EXECUTORS:
            raise UserError(f"unknown executor '{self.executor}'{closest(str(self.executor), EXECUTORS)}",
                            f"use one of: {', '.join(EXECUTORS)}")
        if self.workers != "auto" and (not isinstance(self.workers, int) or self.workers < 1):
            raise UserError(f"workers {self.workers!r} is not a positive whole number or 'auto'", "use --workers 1 or more, or auto")
        if not (self.device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", str(self.device))):
            raise UserError(f"unknown device '{self.device}'", "use auto, cpu, cuda, cuda:N or mps")
        if self.splits not in ("auto", "per_seed", "fixed"):
            raise UserError(f"splits {self.splits!r} is not auto, per_seed or fixed", 'use splits = "auto"')
        if self.augment_views < 1:
            raise UserError(f"augment_views {self.augment_views} is below 1", "use augment_views = 8")

    def _check_types(self) -> None:
        """Each plain setting has the type of its default (a study file can hold anything), so the range checks
        below compare numbers with numbers."""
        for f in fields(self):
            default, value = f.default, getattr(self, f.name)
            if type(default) not in (int, float, bool, str) or f.name in ("workers", "sizes", "depths", "batch_members",
                                                                          "max_seeds"):
                continue
            kind = {int: "whole number", float: "number", bool: "true or false", str: "text"}[type(default)]
            ok = (isinstance(value, bool) if type(default) is bool else
                  isinstance(value, str) if type(default) is str else
                  isinstance(value, (int, float) if type(default) is float else int) and not isinstance(value, bool))
            if not ok:
                raise UserError(f"{f.name} {value!r} is not a {kind}", f"use for example {f.name} = {_toml(default)}")
        if self.seeds is not None and not isinstance(self.seeds, (int, list)) or isinstance(self.seeds, bool):
            raise UserError(f"seeds {self.seeds!r} is not a number of seeds or a list of them", "use seeds = 3, or seeds = [0, 1, 2]")
        if not isinstance(self.strategies, list) or not all(
                isinstance(s, str) or isinstance(s, dict) and isinstance(s.get("name"), str)
                and isinstance(s.get("params", {}), dict) for s in self.strategies):
            raise UserError(f"strategies {self.strategies!r} is not a list of strategy names or tables with a name",
                            'use [[strategies]] tables with name = "..." (and params = {...}), or --strategies scratch,head')
        if isinstance(self.workers, bool):
            raise UserError(f"workers {self.workers!r} is not a positive whole number or 'auto'", "use workers = 1 or more, or \"auto\"")
        if not (isinstance(self.batch_members, bool) or self.batch_members == "auto"):
            raise UserError(f"batch_members {self.batch_members!r} is not true, false or \"auto\"", 'use batch_members = "auto"')
        if self.time_budget is not None:
            parse_duration(self.time_budget)
        parse_duration(self.seed_budget, "seed_budget")
        if self.cache_memory_mb < 0:
            raise UserError(f"cache_memory_mb {self.cache_memory_mb} is negative", "use cache_memory_mb = 2048")

    @property
    def sequential(self) -> bool:
        return self.seeds is None

    def looks(self) -> list[int]:
        """Cumulative seed counts at which verdicts are read: one look for a fixed design."""
        from transferlab.analysis.sequential import seed_rounds

        return seed_rounds(self.first_seeds, self.seed_cap()) if self.sequential else [len(self.seeds)]

    def seed_order(self) -> list[int]:
        return list(range(self.seed_cap())) if self.sequential else list(self.seeds)

    def seed_cap(self) -> int:
        """``max_seeds``, or before an automatic cap is resolved (``timebudget.auto_seed_cap``) its floor."""
        return AUTO_CAPS[0] if self.max_seeds == "auto" else self.max_seeds

    def design(self):
        from transferlab.analysis.stats import Design

        return Design(looks=tuple(self.looks()), alpha=self.alpha, margin=self.margin, seed_order=tuple(self.seed_order()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["budget"] = self.budget.to_dict()
        return d

    def result_defining(self) -> dict:
        """The part of the config that changes results (resume checks it matches)."""
        d = self.to_dict()
        # seed_budget only resolves an automatic max_seeds, and the cap resolved is what a folder keeps and compares.
        for k in ("cache", "cache_memory_mb", "workers", "executor", "device", "ray_address", "estimate", "batch_members",
                  "seed_budget"):
            d.pop(k)
        return d


def _toml(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else f'"{value}"' if isinstance(value, str) else str(value)


def budget_from_dict(d: dict) -> Budget:
    names = {f.name for f in fields(Budget)}
    unknown = set(d) - names
    if unknown:
        bad = sorted(unknown)[0]
        raise UserError(f"unknown budget setting '{bad}'{closest(bad, names)}", f"budget settings are: {', '.join(sorted(names))}")
    d = dict(d)
    if "lrs" in d:
        lrs = d["lrs"]
        if not isinstance(lrs, (list, tuple)) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lrs):
            raise UserError(f"budget lrs {lrs!r} is not a list of numbers", "write it like lrs = [1e-3, 3e-3, 1e-2]")
        d["lrs"] = tuple(float(x) for x in lrs)
    return Budget(**d)


@dataclass
class StudyFile:
    """A study described in a TOML file: model(s), data, output and the StudyConfig.

    ``[model]`` names one model; ``[[models]]`` (each with ``spec``, an optional ``name`` and options) several,
    for a multi-source study. ``models`` is the list either way.
    """

    models: list[dict]
    data: dict
    out: str | None
    config: StudyConfig

    @property
    def model(self) -> dict:
        return self.models[0]


def read_study_file(path: str | Path) -> StudyFile:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist", "check the path, or run `transferlab demo` to see a working study") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {path} is not valid TOML ({exc})", "fix the syntax at the place named") from None
    tables = {"study", "strategies", "model", "models", "data", "out"}
    stray = sorted(set(raw) - tables)
    if stray:  # a misspelt table ([studdy]) would otherwise be ignored without a word
        raise UserError(f"unknown table or key '{stray[0]}' in {path}{closest(stray[0], tables)}",
                        f"a study file holds: {', '.join(sorted(tables))}")
    if not isinstance(raw.get("study", {}), dict):
        raise UserError(f"'study' in {path} is not a table", "write it as a [study] section")
    study = dict(raw.get("study", {}))
    known = {f.name for f in fields(StudyConfig)}
    unknown = set(study) - known
    if unknown:
        bad = sorted(unknown)[0]
        raise UserError(f"unknown [study] setting '{bad}' in {path}{closest(bad, known)}", f"settings are: {', '.join(sorted(known))}")
    if "strategies" in raw:
        study["strategies"] = raw["strategies"]
    if "model" in raw and "models" in raw:
        raise UserError(f"config file {path} has both [model] and [[models]]", "keep one: [[models]] lists several models")
    models = raw.get("models", [raw.get("model")])
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) and "spec" in m for m in models):
        raise UserError(f"config file {path} has no [model] spec", 'add [model] with spec = "..." (for example spec = "demo:mlp"), '
                        "or one [[models]] table per model")
    if not isinstance(raw.get("data"), dict) or "spec" not in raw["data"]:
        raise UserError(f"config file {path} has no [data] spec", 'add [data] with spec = "..." (for example spec = "demo:digits")')
    try:
        config = StudyConfig(**study)
    except TypeError as exc:
        raise UserError(f"bad [study] section in {path}: {exc}", "see the README's study-file example") from None
    return StudyFile(models, raw["data"], raw.get("out"), config)
