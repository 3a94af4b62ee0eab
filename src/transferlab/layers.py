"""``transferlab layers``: Yosinski's splice curves, AnB / AnB+ from the pretrained model (A) and
BnB / BnB+ from a copy of the architecture trained on the target itself (B).

The same pipeline as a study: preflight (no measurements), plan, run through the executors with every
record appended to ``layers.jsonl`` as it finishes (a rerun resumes), analyse, write ``layers.json``.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from transferlab.backbones.base import Backbone
from transferlab.config import StudyConfig
from transferlab.data.base import TargetData
from transferlab.errors import UserError
from transferlab.pipeline import Prepared, Runner, open_store, preflight
from transferlab.results import SCHEMA_VERSION, TrialSpec, write_json_atomic
from transferlab.threads import keeps_threads
from transferlab.trial import run_trial

CURVES = {("A", False): "AnB", ("A", True): "AnB+", ("B", False): "BnB", ("B", True): "BnB+"}


def plan(config: StudyConfig, n_blocks: int) -> tuple[list[int], int, list[TrialSpec]]:
    """Splice trials at every cut 1..n-1, both curves of each net, each seed, at the largest target size."""
    if not isinstance(config.sizes, list):
        raise ValueError(f"sizes {config.sizes!r} are not resolved: plan from preflight's config (pipeline.fit_sizes)")
    seeds = config.seeds if not config.sequential else list(range(config.first_seeds))  # splice curves: a fixed design
    size = config.sizes[-1]
    specs = [TrialSpec("splice", {"n": n, "tune": tune}, seed, size, net=net)
             for net in ("A", "B") for n in range(1, n_blocks) for tune in (False, True) for seed in seeds]
    return seeds, size, specs


def _meta(prep: Prepared, seeds: list[int], size) -> dict:
    return {"schema": SCHEMA_VERSION, "model_key": prep.model_key, "data_key": prep.data_key, "n_train": size,
            "seeds": seeds, "budget": prep.config.budget.to_dict()}


def _check_resume(out: Path | None, meta: dict) -> None:
    path = out / "layers.json" if out else None
    if path is None or not path.exists():
        return
    old = json.loads(path.read_text())
    if {k: old.get(k) for k in meta} != json.loads(json.dumps(meta)):
        raise UserError(f"{out} holds splice curves of another model, data or settings",
                        "choose a new --out folder, or delete layers.json and layers.jsonl there")


def _net_b(prep: Prepared, runner: Runner, seed: int, size) -> tuple[Backbone, dict]:
    """B: the architecture trained from scratch on the target (its test score is the baseline); kept on disk
    so a resumed run splices the very same network."""
    from safetensors.torch import load_file, save_file

    spec = TrialSpec("scratch", {}, seed, size, net="B")
    weights = prep.out / "layers-B.safetensors" if prep.out else None
    if spec.trial_id in runner.stored and weights is not None and weights.exists():
        net = prep.backbone.clone().replace_head(prep.data.n_classes, class_names=prep.data.class_names)
        net.load_state_dict(load_file(str(weights)))
        return net, runner.stored[spec.trial_id]
    kept: list = []
    rec = run_trial(spec, prep.backbone, prep.cache_key, prep.data, prep.config.budget, keep=kept, device=prep.device)
    if rec.status != "ok":
        raise UserError(f"training the baseline network B from scratch failed ({rec.status})",
                        "check the budget and learning rates with `transferlab run` first")
    net = kept[0].model.cpu()
    if weights is not None:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    runner.record(rec.to_dict())
    return net, rec.to_dict()


@keeps_threads
def run_layers(model, data: TargetData, config: StudyConfig | None = None, out: str | Path | None = None,
               on_record=None, wait: bool = False, on_wait=None) -> dict:
    """Splice curves at every cut 1..n-1, for each seed, at the largest target size of ``config``.
    ``wait``: if another process is running in ``out``, wait for it (``on_wait`` is told who) instead of refusing."""
    from transferlab.folder_lock import study_lock

    with study_lock(out, wait, on_wait):
        return _run_layers(model, data, config, out, on_record)


def _run_layers(model, data: TargetData, config: StudyConfig | None, out, on_record) -> dict:
    # Splice trials train every candidate for the whole budget, as Yosinski et al. did (no successive halving).
    # Fixed splits: net B is trained once and its checkpoint chosen on validation; with splits redrawn per seed,
    # other seeds' test examples would include the rows that chose it.
    config = replace(config or StudyConfig(), halving=False, splits="fixed")
    prep = preflight(model, data, config, out, measure=False)
    seeds, size, specs = plan(prep.config, prep.backbone.n_blocks)
    meta = _meta(prep, seeds, size)
    _check_resume(prep.out, meta)
    runner = Runner(prep, open_store(prep.out, None, "layers.jsonl"))  # study.json stays the transfer study's
    with runner:
        net_b, base = _net_b(prep, runner, seeds[0], size)
        by_id = {s.trial_id: s for s in specs}
        if on_record is not None:
            runner.on_record = lambda rec: on_record(_row(by_id[rec["trial_id"]], rec))
        for net, backbone in (("A", None), ("B", net_b)):
            key = None if backbone is None else f"layers-B-{backbone.fingerprint()}"
            runner.run([s for s in specs if s.net == net], backbone, key)
    rows = [{"curve": "base B", "n": prep.backbone.n_blocks, "seed": seeds[0], "test_acc": base["test_acc"]}]
    rows += [_row(s, runner.by_id[s.trial_id]) for s in specs if s.trial_id in runner.by_id]
    result = {**meta, "blocks": prep.backbone.block_names, "records": rows}
    if prep.out:
        write_json_atomic(prep.out / "layers.json", result)
    return result


@keeps_threads
def estimate_layers(model, data: TargetData, config: StudyConfig | None = None, out: str | Path | None = None):
    """``layers --dry-run``: the checks of ``run_layers`` and the cost of its trials (an ``Estimate``)."""
    from transferlab.estimate import estimate

    # Fixed splits: net B is trained once and its checkpoint chosen on validation; with splits redrawn per seed,
    # other seeds' test examples would include the rows that chose it.
    config = replace(config or StudyConfig(), halving=False, splits="fixed")
    prep = preflight(model, data, config, None, measure=False)
    seeds, size, specs = plan(prep.config, prep.backbone.n_blocks)
    if out is not None:
        _check_resume(Path(out), _meta(prep, seeds, size))
    specs = [TrialSpec("scratch", {}, seeds[0], size, net="B"), *specs]
    return estimate(prep, specs, specs)


def _row(spec: TrialSpec, rec: dict) -> dict:
    return {"curve": CURVES[(spec.net, spec.params["tune"])], "n": spec.params["n"], "seed": spec.seed,
            "test_acc": rec.get("test_acc"), "status": rec["status"]}
