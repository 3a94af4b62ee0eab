"""The steps every study shares: preflight, run (with resume and executors), write.

``preflight`` checks everything a run needs (config, executor, device, data against the model, the output
folder) before anything is written, prepares the data once, and runs the registered measurements over one
shared set of activations. ``run_specs`` runs trial specs that are not in the store yet and appends each
record the moment it finishes, so a stopped study loses nothing. ``execution.run_study`` and
``layers.run_layers`` are these steps in order.
"""
from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from transferlab.backbones.base import Backbone
from transferlab.cache import FeatureCache
from transferlab.config import StudyConfig
from transferlab.data.base import Split, TargetData, hold_out, resplit
from transferlab.errors import UserError
from transferlab.members import batch_mode
from transferlab.results import TrialSpec, TrialStore, read_study, write_json_atomic
from transferlab.sources import check_fits


@dataclass
class Prepared:
    """A study's checked inputs: what every later step reads."""

    backbone: Backbone
    data: TargetData  # preprocessed for the backbone; the test split still sealed
    config: StudyConfig
    device: str
    out: Path | None
    cache: FeatureCache  # the study's one cache (a throwaway in-memory one when caching is off)
    study_cache: FeatureCache | None  # the cache trials may use (None with cache = false)
    model_key: str
    data_key: str
    measurements: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)  # strategies that do not apply to this model, with the reason
    sizes_dropped: list = field(default_factory=list)  # default sizes the data cannot fill, with the reason

    @property
    def cache_key(self) -> str:  # weights + preprocessing + data: any change, a new entry
        return f"{self.model_key}-{self.data_key}"


# ---- inputs --------------------------------------------------------------------------
def as_target(data, class_names: list[str] | None = None) -> TargetData:
    """A TargetData from a TargetData, an ``(X, y)`` pair of arrays, or a torch Dataset of (x, y) pairs."""
    import numpy as np

    from transferlab.data.base import split_arrays
    from transferlab.data.tables import encode_labels

    if isinstance(data, TargetData):
        return data
    if isinstance(data, torch.utils.data.Dataset):
        pairs = [data[i] for i in range(len(data))]
        data = (torch.stack([torch.as_tensor(x) for x, _ in pairs]), np.array([int(y) for _, y in pairs]))
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        x = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not torch.is_tensor(x) else x.float()
        codes, names = encode_labels(np.asarray(y), class_names)
        return split_arrays(x, codes, names, name="arrays")
    raise UserError(f"cannot use {type(data).__name__} as target data", "pass a TargetData, (X, y) arrays or a torch Dataset")


def as_backbone(model, data: TargetData) -> Backbone:
    """A Backbone from a Backbone, a ModelSource, or any nn.Module (blocks found on the data's first rows)."""
    from transferlab.data.base import take
    from transferlab.sources import ModelSource, build_checked

    if isinstance(model, Backbone):
        return model
    if isinstance(model, ModelSource):
        return build_checked(model, data)
    if isinstance(model, torch.nn.Module):
        from transferlab.backbones.torch import from_module

        from transferlab.sources import misfit

        example = take(data.train.inputs, torch.arange(min(2, len(data.train))))
        try:
            return from_module(model, example, spec={"source": f"module:{type(model).__name__}"})
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's module on the user's rows: they do not fit
            raise misfit(f"the {type(model).__name__} given", example, exc) from exc
    raise UserError(f"cannot use {type(model).__name__} as a model", "pass an nn.Module, a Backbone or a model spec")


def fit_sizes(config: StudyConfig, data: TargetData) -> tuple[StudyConfig, list[dict]]:
    """``sizes = "auto"``: the default sizes that the smallest class's training examples can fill, and the others
    with the reason they were dropped. Explicit sizes are kept as given (``check_inputs`` refuses one too large)."""
    from transferlab.config import DEFAULT_SIZES

    if config.sizes != "auto":
        return config, []
    counts = data.per_class_counts()
    smallest = min(range(len(counts)), key=counts.__getitem__)
    keep = [n for n in DEFAULT_SIZES if n == "all" or n <= counts[smallest]]
    dropped = [{"size": n, "reason": f"more than the {counts[smallest]} training examples of class "
                                     f"'{data.class_names[smallest]}'"} for n in DEFAULT_SIZES if n not in keep]
    return replace(config, sizes=keep), dropped


def check_inputs(config: StudyConfig, data: TargetData) -> None:
    if not config.strategies:
        raise UserError("the study lists no strategies", "add at least 'scratch' and one transfer strategy")
    # Which classes exist is input validation, not a choice made on test results; the read is logged all the same.
    extra = data.test.label_set() - set(data.train.y.unique().tolist())
    if extra:
        names = ", ".join(data.class_names[c] for c in sorted(extra))
        raise UserError(f"the test split has classes the training split lacks ({names})", "give every class some training examples, or drop those test rows")
    for n in config.sizes:
        data.train_indices(n, 0)  # raises a UserError for sizes larger than the data
    if config.depths == "auto" and not config.profile:
        raise UserError('depths = "auto" needs the profile', "turn profile back on, or list the depths")


def check_strategies(config: StudyConfig, backbone: Backbone) -> list[dict]:
    """Each strategy's parameters checked against the model; those that do not apply are listed with the reason.

    A study in which no transfer strategy applies is refused (here, before anything is written).
    """
    from transferlab.strategies.base import from_spec

    applied, left_out = [], []
    for entry in config.strategies:
        strategy = from_spec(entry["name"], entry.get("params"))
        strategy.check(backbone)
        reason = strategy.applies(backbone)
        (left_out.append({"label": strategy.label, "reason": reason}) if reason else applied.append(strategy))
    if left_out and not any(s.reuses_weights for s in applied):
        raise UserError(f"no transfer strategy of the study applies to this model ({left_out[0]['label']}: "
                        f"{left_out[0]['reason']})", "add strategies that do, e.g. --strategies scratch,linear_probe,finetune")
    return left_out


def resolve_device(device: str) -> str:
    """The device a study runs on; a device this machine lacks is refused here, before anything runs."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' was asked for but this machine has no CUDA GPU", "use --device cpu or auto")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise UserError(f"device '{device}' does not exist (this machine has {torch.cuda.device_count()} GPUs)",
                        "use --device cuda:0")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' was asked for but is not available here", "use --device cpu or auto")
    return device


def resolve_workers(config: StudyConfig, backbone: Backbone, device: str) -> StudyConfig:
    """``workers="auto"`` made a number, and this process's threads set for the model (``threads.threads_for``;
    the main process computes the cache with the usable cores, then each worker gets its share)."""
    from transferlab.threads import auto_workers, limit_threads, threads_for

    n_params = sum(p.numel() for p in backbone.parameters())
    if config.workers == "auto":
        workers = auto_workers(n_params, device)
        executor = "process" if workers > 1 and config.executor == "inline" else config.executor
        config = replace(config, workers=workers, executor=executor)
    limit_threads(threads_for(n_params))
    return config


EVAL_INPUT_ELEMENTS = 1 << 24  # numbers of input per evaluation batch (64 MB as float32)


def eval_rows(budget, data: TargetData) -> int:
    """The evaluation batch: ``budget.eval_batch_size`` rows, fewer for large inputs. A network's first
    activations are several times its input, so 512 images at 224 px take about 3 GB in one forward pass;
    batches of at most ``EVAL_INPUT_ELEMENTS`` input numbers keep that near 0.5 GB at the same speed."""
    from transferlab.data.base import leaves

    first = leaves(data.train.inputs)[0]
    per_row = math.prod(first.shape[1:]) if hasattr(first, "shape") and len(first.shape) > 1 else 1
    return max(16, min(budget.eval_batch_size, EVAL_INPUT_ELEMENTS // max(1, per_row)))


def check_executor(config: StudyConfig) -> None:
    import importlib.util

    if config.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError("the ray executor needs Ray", 'pip install "transferlab[ray]"')


def prepare(data: TargetData, backbone: Backbone) -> TargetData:
    """Apply the pretrained model's preprocessing once, to every split (the test split stays sealed and logged)."""
    pre = backbone.preprocessing.apply
    mapped = lambda s: Split(pre(s.inputs), s.y)  # noqa: E731
    source = mapped(data.source) if data.source is not None else None
    holdout = mapped(data.holdout) if data.holdout is not None else None
    return replace(data, train=mapped(data.train), val=mapped(data.val), test=data.test.mapped(mapped, "preprocess"),
                   source=source, holdout=holdout)


def check_folder(out: Path | None, model_key: str, data_key: str, config: StudyConfig | None,
                 test_per_seed: bool | None = None, batched: bool | None = None, dropout: bool = False) -> None:
    """A folder that holds another study (other model, data or, given ``config``, settings) is refused, not mixed;
    so is one whose seeds drew their test splits otherwise (``test_per_seed``: schema 4 redrew test per seed), whose
    trials trained otherwise (``batched``: members batched or one at a time, ``members.batch_mode``), or, where
    dropout trains (``dropout``), whose masks came from torch's shared stream (schema 5)."""
    if out is None or not (out / "study.json").exists():
        return
    old = read_study(out)
    if dropout and old.get("dropout_masks") == "shared":
        raise UserError(f"{out} holds a study whose dropout masks came from torch's shared stream (an older "
                        "transferlab), which this run would mix with masks of each run's own",
                        "choose a new --out folder (`transferlab report` still reads that one)")
    was = (old.get("members") or {}).get("batched")
    if batched is not None and was is not None and bool(was) != batched:
        # A batched convolution sums in another order than a solo one: in float32 a seed's record can differ in the
        # last bits, and over a long run in a choice (benchmarks/bench_same_seed.py). One study keeps one mode.
        how = "as batched members" if was else "one member at a time"
        raise UserError(f"{out} holds a study whose trials trained {how}, which this run would mix with its own",
                        f"choose a new --out folder, or resume it with batch_members = {'true' if was else 'false'} "
                        "in the study file")
    splits = (old.get("data") or {}).get("splits") or {}
    if test_per_seed is not None and splits and bool(splits.get("test_per_seed", splits.get("per_seed"))) != test_per_seed:
        how = "redrawn per seed" if not test_per_seed else "one for the whole study"
        raise UserError(f"{out} holds a study whose test split was {how}, which this run would mix with its own",
                        "choose a new --out folder" + (", or resume it with --splits per_seed" if not test_per_seed else ""))
    mine = json.loads(json.dumps(config.result_defining())) if config else {}
    if mine.get("max_seeds") == "auto":  # an automatic cap resumes the folder's own (execution._seed_cap)
        mine["max_seeds"] = old.get("config", {}).get("max_seeds")
    theirs = {k: v for k, v in old.get("config", {}).items() if k in mine}
    same_inputs = (old.get("model_key"), old.get("data_key")) == (model_key, data_key)
    if not same_inputs or theirs != mine:
        raise UserError(f"{out} holds a different study (other model, data or settings)", "choose a new --out folder, or delete that one")


def resume_modes(backbone: Backbone, data: TargetData, config: StudyConfig, device: str) -> dict:
    """What a resumed study must share with the folder's beside its settings (``check_folder``'s keywords): how its
    seeds drew test, how its members trained, whether dropout trains."""
    return {"test_per_seed": data.test_per_seed, "batched": batch_mode(config.batch_members, device)[0],
            "dropout": trains_dropout(backbone, config)}


def trains_dropout(backbone: Backbone, config: StudyConfig) -> bool:
    """Whether a study's runs may draw dropout masks: the network has a dropout layer, or a strategy adds one."""
    from torch import nn

    def positive(v) -> bool:
        values = v if isinstance(v, (list, tuple)) else [v]
        return any(isinstance(x, (int, float)) and x > 0 for x in values)

    random_layer = ("Dropout", "DropPath", "StochasticDepth", "DropBlock")  # torch's, timm's and torchvision's names
    return (any(any(n in type(m).__name__ for n in random_layer) and getattr(m, "p", getattr(m, "drop_prob", 1)) != 0
                for m in backbone.modules())
            or any(positive((e.get("params") or {}).get("dropout")) for e in config.strategies))


def cached_cuts(config: StudyConfig, backbone: Backbone) -> set[int]:
    """The cuts the study caches for whole splits: those its configurations read frozen (``Strategy.reads_cut``)
    and those the preflight measurements ask for; every cut when the depths to run wait on the profile ("auto").
    The profile scores the other cuts batch by batch on its own rows (``measurements.profile``)."""
    from transferlab.measurements import wanted_cuts
    from transferlab.strategies.base import PlanContext, from_spec

    if config.depths == "auto":
        return set(range(1, backbone.n_blocks + 1))
    plan, cuts = PlanContext(config.depths, None), set(wanted_cuts(config, backbone))
    for entry in config.strategies:
        strategy = from_spec(entry["name"], entry.get("params"))
        if strategy.applies(backbone) is None:
            cuts.update(k for s in strategy.expand(backbone, plan) if (k := s.reads_cut(backbone)) is not None)
    return cuts


def preflight(model, data, config: StudyConfig, out: str | Path | None, measure: bool = True) -> Prepared:
    """Check, prepare and measure; nothing is written. Every refusal happens here."""
    from transferlab.data.augment import resolve
    from transferlab.executors import study_cache
    from transferlab.measurements import Preflight, run_measurements

    data = hold_out(as_target(data))
    data = replace(data, augment=resolve(config.augment, data.augment, config.augment_views))
    if data.augment is not None:
        data.augment.check(data.train.inputs)
    backbone = as_backbone(model, data)
    check_fits(backbone, data.train.inputs)  # the door: before any measurement, cache or training reads the data
    device = resolve_device(config.device)
    config = resolve_workers(config, backbone, device)
    config = replace(config, budget=replace(config.budget, eval_batch_size=eval_rows(config.budget, data)))
    check_executor(config)
    config, dropped = fit_sizes(config, data)
    check_inputs(config, data)
    skipped = check_strategies(config, backbone)
    data = resplit(prepare(data, backbone), config.splits)
    out = Path(out) if out else None
    model_key, data_key = backbone.fingerprint(), data.fingerprint()
    # A time-budgeted study is checked once its plan is fitted (execution._fit_time): its folder holds the fitted config.
    # The layers command (measure=False) keeps its own fixed splits and trains its own runs beside a study: only the
    # study's model and data are checked for it.
    check_folder(out, model_key, data_key, config if measure and config.time_budget is None else None,
                 **(resume_modes(backbone, data, config, device) if measure else {}))
    cache = study_cache(config, device, out, cached_cuts(config, backbone))
    prepared = Prepared(backbone, data, config, device, out, cache or FeatureCache(config.budget.eval_batch_size, device),
                        cache, model_key, data_key, skipped=skipped, sizes_dropped=dropped)
    if measure:
        pf = Preflight(backbone, data, config, prepared.cache, prepared.cache_key, device)
        prepared.measurements = run_measurements(pf)
    return prepared


# ---- running ------------------------------------------------------------------------------
def open_store(out: Path | None, study: dict | None, name: str = "trials.jsonl") -> TrialStore | None:
    """The folder's store of records (None without a folder); ``study``, when given, is written as study.json."""
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    if study is not None:
        write_json_atomic(out / "study.json", study)
    return TrialStore(out / name)


class Runner:
    """Runs specs through the configured executor, skipping those already in the store (resume)."""

    def __init__(self, prep: Prepared, store: TrialStore | None, on_record=None):
        from transferlab.executors import WorkerPool, run_trials

        self.prep, self.store, self.on_record, self._run = prep, store, on_record, run_trials
        self.pool = WorkerPool()  # kept across rounds; ``close`` ends it
        done = store.done_ids() if store else set()
        self.stored = {r["trial_id"]: r for r in store.load() if r["trial_id"] in done} if store else {}
        self.by_id = dict(self.stored)  # every record this run can use: stored, then each as it finishes
        self.ran = 0

    def record(self, rec: dict) -> None:
        if self.store:
            self.store.append(rec)
        self.by_id[rec["trial_id"]] = rec
        if self.on_record:
            self.on_record(rec)

    def adopt(self, records) -> None:
        """Take finished records of identical trials run elsewhere as this run's own (stored, never rerun)."""
        for rec in records:
            if rec["trial_id"] not in self.stored:
                if self.store:
                    self.store.append(rec)
                self.stored[rec["trial_id"]] = self.by_id[rec["trial_id"]] = rec

    def records(self, specs: list[TrialSpec]) -> list[dict]:
        return [self.by_id[s.trial_id] for s in specs if s.trial_id in self.by_id]

    def run(self, specs: list[TrialSpec], backbone: Backbone | None = None, key: str | None = None) -> list[dict]:
        """Records of ``specs`` in order: stored ones reused, the rest run now (``backbone``: another model)."""
        p = self.prep
        todo = [s for s in specs if s.trial_id not in self.stored]
        self._run(todo, backbone or p.backbone, key or p.cache_key, p.data, p.config, p.device, p.out, self.record,
                  p.study_cache if backbone is None else None, self.pool)
        self.ran += len(todo)
        return self.records(specs)

    def close(self) -> None:
        """End the worker processes kept between rounds."""
        self.pool.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def environment() -> dict:
    import numpy
    import sklearn

    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
        "sklearn": sklearn.__version__, "platform": platform.platform(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "cuda": torch.cuda.is_available(),
    }


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024
