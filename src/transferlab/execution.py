"""A study: validate, plan the trials, run what is not done yet, analyse, report.

Every finished trial is appended to ``trials.jsonl`` as soon as it finishes,
so a study stopped at any point and started again with the same command runs
only what is missing.
"""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from transferlab.backbones.base import Backbone
from transferlab.config import StudyConfig
from transferlab.data.base import SealedSplit, Split, TargetData
from transferlab.errors import UserError
from transferlab.similarity import feature_relevance
from transferlab.results import StudyResult, TrialSpec, TrialStore, write_json_atomic
from transferlab.strategies.base import Strategy, from_spec
from transferlab.executors import run_trials, study_cache
from transferlab.diagnose import bn_check, input_check
from transferlab.cache import FeatureCache
from transferlab.profile import profile, top_activations
from transferlab.trial import run_trial, zero_shot


class StudyCallback:
    """Progress events. The CLI attaches a progress bar; the library itself prints nothing."""

    def on_start(self, total: int, todo: int, study: dict) -> None: ...

    def on_trial_end(self, record: dict) -> None: ...

    def on_end(self, result: StudyResult) -> None: ...


AUTO_DEPTHS = 3  # with depths="auto", the best cuts by the profile's mean rank, plus k=0


def auto_depths(prof: dict, n: int = AUTO_DEPTHS) -> list[int]:
    """Freeze depths worth training: the cuts the scores rank highest (mean rank over the four scores)."""
    import numpy as np
    from scipy.stats import rankdata

    cuts = prof["cuts"]
    ranks = np.mean([rankdata([-c[s] for c in cuts]) for s in ("logme", "hscore", "knn_acc", "probe_acc")], axis=0)
    best = [cuts[i]["k"] for i in np.argsort(ranks, kind="stable")[:n]]
    return sorted({0, *best})


def plan(config: StudyConfig, backbone: Backbone, prof: dict | None = None, seeds: list[int] | None = None,
         only: set | None = None) -> list[TrialSpec]:
    """The trials of one round: every strategy x size x seed, or only the (label, size) pairs in ``only``."""
    strategies: list[Strategy] = []
    for entry in config.strategies:
        strategy = from_spec(entry["name"], entry.get("params"))
        strategy.check(backbone)
        expanded = strategy.expand(backbone)
        if entry["name"] == "freeze_k" and (entry.get("params") or {}).get("k") is None and config.depths != "all":
            keep = auto_depths(prof) if config.depths == "auto" else config.depths
            for k in keep:
                backbone._check_k(k)
            expanded = [s for s in expanded if s.k in keep]
        strategies.extend(expanded)
    seen, specs = set(), []
    for n in config.sizes:
        for seed in (config.seed_order() if seeds is None else seeds):
            for s in strategies:
                if only is not None and (s.label, n) not in only:
                    continue
                spec = TrialSpec(s.name, s.params(), seed, n, s.label)
                if spec.trial_id not in seen:
                    seen.add(spec.trial_id)
                    specs.append(spec)
    return specs


def validate(config: StudyConfig, backbone: Backbone, data: TargetData) -> None:
    if not config.strategies:
        raise UserError("the study lists no strategies", "add at least 'scratch' and one transfer strategy")
    extra = data.test.label_set() - set(data.train.y.unique().tolist())
    if extra:
        names = ", ".join(data.class_names[c] for c in sorted(extra))
        raise UserError(f"the test split has classes the training split lacks ({names})", "give every class some training examples, or drop those test rows")
    for n in config.sizes:
        data.train_indices(n, 0)  # raises a UserError for sizes larger than the data


def prepare(data: TargetData, backbone: Backbone) -> TargetData:
    """Apply the pretrained model's preprocessing once, to every split (the test split stays sealed)."""
    pre = backbone.preprocessing.apply
    mapped = lambda s: Split(pre(s.inputs), s.y)  # noqa: E731
    test = SealedSplit(mapped(data.test._split))
    test.log = data.test.log  # one log: reads of the prepared test split are reads of the test split
    source = mapped(data.source) if data.source is not None else None
    return replace(data, train=mapped(data.train), val=mapped(data.val), test=test, source=source)


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


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


# ---- the study ----------------------------------------------------------------
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
    from transferlab.sources import ModelSource

    if isinstance(model, Backbone):
        return model
    pre = model.preprocessing if isinstance(model, ModelSource) else None
    example = take(data.train.inputs, torch.arange(2))
    example = pre.apply(example) if pre else example
    if isinstance(model, ModelSource):
        return model.build(example)
    if isinstance(model, torch.nn.Module):
        from transferlab.backbones.torch import from_module

        return from_module(model, example, spec={"source": f"module:{type(model).__name__}"})
    raise UserError(f"cannot use {type(model).__name__} as a model", "pass an nn.Module, a Backbone or a model spec")


def run_study(model, data, config: StudyConfig | None = None, out: str | Path | None = None,
              callbacks: list[StudyCallback] | tuple = (), report: bool = True, meta: dict | None = None,
              save_best: str | Path | None = None) -> StudyResult:
    """Run every strategy against scratch on the same splits, budget and seeds.

    ``model``: a Backbone, or any nn.Module; ``data``: a TargetData, ``(X, y)`` or a torch Dataset.
    ``out``: the study folder (``study.json``, ``trials.jsonl``, ``summary.csv``,
    ``report.html``). Rerunning into the same folder resumes.
    ``save_best``: a folder for the recommended strategy's trained model (safetensors + JSON).
    """
    from transferlab.analysis import analyze

    from transferlab.data.augment import resolve

    config = config or StudyConfig()
    data = as_target(data)
    data = replace(data, augment=resolve(config.augment, data.augment, config.augment_views))
    if data.augment is not None:
        data.augment.check(data.train.inputs)
    model = as_backbone(model, data)
    device = resolve_device(config.device)
    validate(config, model, data)
    if config.depths == "auto" and not config.profile:
        raise UserError('depths = "auto" needs the profile', "turn profile back on, or list the depths")
    data = prepare(data, model)
    model_key, data_key = model.fingerprint(), data.fingerprint()
    cache_key = f"{model_key}-{data_key}"  # weights + preprocessing + data: any change, a new entry
    _check_folder(out, model_key, data_key, config)  # before anything is written into it
    # One cache for the whole study: the profile's forward pass is the one the trials reuse.
    cache = study_cache(config, device, Path(out) if out else None, model.n_blocks)
    features_cache = cache or FeatureCache(config.budget.eval_batch_size, device)
    prof = profile(model, data, features_cache, cache_key) if config.profile else None
    activations = top_activations(model, data, cache=features_cache, key=cache_key) if config.profile else None
    design = replace(config.design(), test_resolution=1 / len(data.test), val_resolution=1 / len(data.val))
    study = {
        "schema": 1, "config": config.to_dict(), "design": design.to_dict(), "model": model.describe(),
        "augmentation": data.augment.describe() if data.augment else {"kinds": [], "views": 0},
        "model_key": model_key, "data": data.describe(), "data_key": data_key, "environment": environment(),
        "similarity": feature_relevance(model, data, cache=features_cache, key=cache_key), "profile": prof,
        "activations": activations,
        "diagnostics": {"inputs": input_check(model, data), "batchnorm": bn_check(model, data)}, **(meta or {}),
    }
    store = _open_store(out, study, config)
    done = store.done_ids() if store else set()
    stored = {r["trial_id"]: r for r in store.load() if r["trial_id"] in done} if store else {}
    records: list[dict] = []

    def on_record(rec: dict) -> None:
        if store:
            store.append(rec)
        records.append(rec)
        for cb in callbacks:
            cb.on_trial_end(rec)

    t0 = time.perf_counter()
    zs = next((r for r in stored.values() if r["strategy"] == "zero_shot"), None)
    if zs is None:
        zs_rec = zero_shot(model, data, config.budget.eval_batch_size, device)
        if zs_rec is not None:
            on_record(zs_rec.to_dict())
    else:
        records.append(zs)
    specs: list[TrialSpec] = []

    def run_round(seeds: list[int], only: set | None) -> list[dict]:
        round_specs = plan(config, model, prof, seeds, only)
        specs.extend(round_specs)
        todo = [s for s in round_specs if s.trial_id not in stored]
        for cb in callbacks:
            cb.on_start(len(round_specs), len(todo), study)
        before = len(records)
        records.extend(stored[s.trial_id] for s in round_specs if s.trial_id in stored)
        run_trials(todo, model, cache_key, data, config, device, Path(out) if out else None, on_record, cache)
        return [r for r in records[before:] if r["strategy"] != "zero_shot"]

    from transferlab.analysis.sequential import run_sequential

    _, rounds = run_sequential(config.looks(), design, run_round)
    study["n_trials"] = len(specs)
    study["rounds"] = rounds
    study["run"] = {"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
                    "trials_run": sum(1 for s in specs if s.trial_id not in stored)}
    order = {s.trial_id: i for i, s in enumerate(specs)}
    records.sort(key=lambda r: order.get(r["trial_id"], -1))
    result = StudyResult(Path(out) if out else None, study, records, analyze(records, study))
    if save_best:
        result.study["saved_model"] = _save_best(result, model, model_key, data, config, device, save_best, meta)
    if out:
        _write_outputs(result, report)
    for cb in callbacks:
        cb.on_end(result)
    return result


def _save_best(result, model, model_key, data, config, device, folder, meta) -> dict:
    """Retrain the recommended configuration (first seed, largest size; deterministic) and save it."""
    from transferlab.saving import save_model

    rec = result.analysis["recommendation"]
    if not rec.get("label"):
        raise UserError("no strategy finished, so there is no model to save", "look at the failed trials in the report")
    seed = config.seed_order()[0]
    record = next(r for r in result.trials if r["label"] == rec["label"] and r["n_train"] == rec["n_train"] and r["seed"] == seed)
    spec = TrialSpec(record["strategy"], record["params"], seed, record["n_train"], record["label"])
    kept: list = []
    again = run_trial(spec, model, model_key, data, config.budget, None, device, keep=kept)
    path = save_model(kept[0], model, folder, data.class_names, spec.label, (meta or {}).get("model_options"))
    return {"path": str(path), "label": spec.label, "seed": seed, "n_train": spec.n_train, "test_acc": again.test_acc,
            "study_test_acc": record["test_acc"]}


def _check_folder(out, model_key: str, data_key: str, config: StudyConfig) -> None:
    """A folder that holds another study (other model, data or settings) is refused, not mixed."""
    meta_path = Path(out) / "study.json" if out else None
    if meta_path is None or not meta_path.exists():
        return
    import json

    old = json.loads(meta_path.read_text())
    same = (old.get("model_key"), old.get("data_key"), StudyConfig(**old["config"]).result_defining()) == (
        model_key, data_key, config.result_defining())
    if not same:
        raise UserError(f"{out} holds a different study (other model, data or settings)", "choose a new --out folder, or delete that one")


def _open_store(out, study: dict, config: StudyConfig) -> TrialStore | None:
    if out is None:
        return None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "study.json", study)
    return TrialStore(out / "trials.jsonl")


def _write_outputs(result: StudyResult, report: bool) -> None:
    from transferlab.analysis.tables import summary_csv

    out = result.out_dir
    write_json_atomic(out / "study.json", result.study)
    write_json_atomic(out / "analysis.json", result.analysis)
    (out / "summary.csv").write_text(summary_csv(result.analysis))
    if report:
        from transferlab.report.html import write_report

        result.report_path = write_report(out)
