"""A study as a short pipeline: preflight, plan, run, analyse, write.

Every finished trial is appended to ``trials.jsonl`` as soon as it finishes,
so a study stopped at any point and started again with the same command runs
only what is missing.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from transferlab.config import StudyConfig
from transferlab.errors import UserError
from transferlab.folder_lock import study_lock
from transferlab.members import batch_mode
from transferlab.pipeline import (Prepared, Runner, as_backbone, as_target, environment, open_store, peak_rss_mb,
                                  preflight, prepare)
from transferlab.results import SCHEMA_VERSION, StudyResult, TrialSpec, write_json_atomic, write_atomic
from transferlab.strategies.base import PlanContext, Strategy, from_spec
from transferlab.threads import keeps_threads
from transferlab.trial import run_trial, zero_shot

__all__ = ["StudyCallback", "as_backbone", "as_target", "estimate_study", "plan", "prepare", "run_study"]


class StudyCallback:
    """Progress events. The CLI attaches a progress bar and trackers; the library itself prints nothing."""

    def on_wait(self, holder: str) -> None:
        """The study folder is in use by ``holder`` and ``wait`` was asked: the study starts when it is free."""

    def on_begin(self, study: dict) -> None:
        """Once, before the first trial (study.json's content)."""

    def on_estimate(self, estimate) -> None:
        """The measured cost of the trials still to run (an ``estimate.Estimate``), before the first one."""

    def on_start(self, total: int, todo: int, study: dict) -> None: ...

    def on_trial_end(self, record: dict) -> None: ...

    def on_end(self, result: StudyResult) -> None: ...


def strategies(config: StudyConfig, prep: Prepared) -> list[Strategy]:
    """Each configured strategy expanded into the configurations to run; those the preflight found do not apply
    to this model (``prep.skipped``) are left out."""
    ctx = PlanContext(config.depths, prep.measurements.get("profile"))
    left_out = {s["label"] for s in prep.skipped}
    out: list[Strategy] = []
    for entry in config.strategies:
        strategy = from_spec(entry["name"], entry.get("params"))
        if strategy.label not in left_out:
            out.extend(strategy.expand(prep.backbone, ctx))
    return out


def plan(config: StudyConfig, configs: list[Strategy], seeds: list[int] | None = None,
         only: set | None = None) -> list[TrialSpec]:
    """The trials of one round: every configuration x size x seed, or only the (label, size) pairs in ``only``."""
    if not isinstance(config.sizes, list):
        raise ValueError(f"sizes {config.sizes!r} are not resolved: plan from preflight's config (pipeline.fit_sizes)")
    seen, specs = set(), []
    for n in config.sizes:
        for seed in (config.seed_order() if seeds is None else seeds):
            for s in configs:
                if only is not None and (s.label, n) not in only:
                    continue
                spec = TrialSpec(s.name, s.params(), seed, n, s.label)
                if spec.trial_id not in seen:
                    seen.add(spec.trial_id)
                    specs.append(spec)
    return specs


def describe(prep: Prepared, configs: list[Strategy], meta: dict | None) -> dict:
    """study.json before any trial: what was run on what, and the preflight measurements."""
    data = prep.data
    design = replace(prep.config.design(), test_resolution=1 / len(data.test),
                     val_resolution=1 / len(data.holdout if data.holdout is not None else data.val),
                     test_examples=0 if data.test_per_seed else len(data.test))  # one test split: its per-example term
    return {
        "schema": SCHEMA_VERSION, "config": prep.config.to_dict(), "design": design.to_dict(),
        "model": prep.backbone.describe(), "model_key": prep.model_key, "data": data.describe(), "data_key": prep.data_key,
        "augmentation": data.augment.describe() if data.augment else {"kinds": [], "views": 0},
        "environment": environment(), "depth_axes": {s.name: s.depth_param for s in configs if s.depth_param},
        "keep_axes": {s.name: s.depth_param for s in configs if s.removes_later and s.params()[s.depth_param] is not None},
        "members": dict(zip(("batched", "why"), batch_mode(prep.config.batch_members, prep.device))),
        "dropout_masks": "own",  # each run's own key (rng.py); schema 5's came from torch's shared stream
        "skipped": prep.skipped, "sizes_dropped": prep.sizes_dropped, "budget_rule": prep.config.budget.rule(), **prep.measurements, **(meta or {}),
    }


@keeps_threads
def run_study(model, data, config: StudyConfig | None = None, out: str | Path | None = None,
              callbacks: list[StudyCallback] | tuple = (), report: bool = True, meta: dict | None = None,
              save_best: str | Path | None = None, shared: list[dict] | tuple = (), wait: bool = False) -> StudyResult:
    """Run every strategy against scratch on the same splits, budget and seeds.

    ``model``: a Backbone, or any nn.Module; ``data``: a TargetData, ``(X, y)`` or a torch Dataset.
    ``out``: the study folder (``study.json``, ``trials.jsonl``, ``summary.csv``,
    ``report.html``). Rerunning into the same folder resumes.
    ``save_best``: a folder for the recommended strategy's trained model (safetensors + JSON).
    ``shared``: finished records of identical trials run elsewhere (a multi-source study's scratch trials for
    the same architecture and inputs): adopted into the store instead of being run again.
    ``wait``: if another process is running a study in ``out``, wait for it instead of refusing (folder_lock).
    """
    with study_lock(out, wait, lambda holder: [cb.on_wait(holder) for cb in callbacks]):
        return _run_study(model, data, config or StudyConfig(), out, callbacks, report, meta, save_best, shared)


def _run_study(model, data, config: StudyConfig, out, callbacks, report: bool, meta: dict | None, save_best,
               shared) -> StudyResult:
    from transferlab.analysis import analyze
    from transferlab.analysis.sequential import run_sequential
    from transferlab.analysis.stats import Design

    prep = preflight(model, data, config, out)  # every refusal happens here, before anything is written
    prep, configs, seed_cap = _seed_cap(prep, strategies(prep.config, prep), prep.out)
    prep, configs, time_plan = _fit_time(prep, configs, prep.out)
    config = prep.config  # with the sizes that fit the data (and the time budget), and the seed cap
    study = describe(prep, configs, meta)
    if time_plan is not None:
        study["time_plan"] = time_plan.to_dict()
    if seed_cap is not None:
        study["seed_cap"] = seed_cap
    runner = Runner(prep, open_store(prep.out, study), lambda rec: [cb.on_trial_end(rec) for cb in callbacks])
    runner.adopt(shared)
    for cb in callbacks:
        cb.on_begin(study)
    if config.estimate:
        est = _estimate(prep, configs, set(runner.stored))
        study["estimate"] = est.to_dict()
        for cb in callbacks:
            cb.on_estimate(est)
    t0 = time.perf_counter()
    records = _zero_shot(prep, runner)
    specs: list[TrialSpec] = []
    round_s: list[float] = []

    def run_round(seeds: list[int], only: set | None) -> list[dict]:
        round_specs = plan(config, configs, seeds, only)
        specs.extend(round_specs)
        for cb in callbacks:
            cb.on_start(len(round_specs), sum(1 for s in round_specs if s.trial_id not in runner.stored), study)
        start = time.perf_counter()
        done = runner.run(round_specs)
        round_s.append(time.perf_counter() - start)
        return done

    with runner:  # its worker processes serve every round, then end
        _, rounds = run_sequential(config.looks(), Design.from_dict(study["design"]), run_round)
    for summary, seconds in zip(rounds, round_s):
        summary["wall_s"] = seconds  # against the estimate (benchmarks/bench_estimate.py)
    records += runner.records(specs)  # in plan order
    study.update(n_trials=len(specs), rounds=rounds,
                 run={"wall_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), "trials_run": runner.ran})
    result = StudyResult(prep.out, study, records, analyze(records, study))
    if save_best:
        result.study["saved_model"] = _save_best(result, prep, save_best, meta)
    if prep.out:
        _write_outputs(result, report)
    for cb in callbacks:
        cb.on_end(result)
    return result


def _fit_time(prep: Prepared, configs: list[Strategy], folder):
    """With a ``time_budget``: the study cut down to fit it (timebudget.py), or as a rerun finds it in ``folder``."""
    if prep.config.time_budget is None:
        return prep, configs, None
    from transferlab.pipeline import check_folder
    from transferlab.timebudget import fit_to_time

    config, configs, time_plan = fit_to_time(prep, configs, prep.config.time_budget, stored_plan(folder))
    check_folder(Path(folder) if folder is not None else None, prep.model_key, prep.data_key, config)
    return replace(prep, config=config), configs, time_plan


def _seed_cap(prep: Prepared, configs: list[Strategy], folder):
    """``max_seeds = "auto"`` resolved from the cost estimate (timebudget.auto_seed_cap), or as ``folder`` has it."""
    from transferlab.timebudget import auto_seed_cap

    stored = stored_plan(folder, "seed_cap")
    if stored is None and folder is not None and (Path(folder) / "study.json").exists():  # started before "auto"
        from transferlab.results import read_study

        stored = {"auto": True, "max_seeds": read_study(folder)["config"]["max_seeds"], "why": "the folder's own cap"}
    config, note = auto_seed_cap(prep, configs, stored)
    return replace(prep, config=config), configs, note


def stored_plan(out: Path | None, key: str = "time_plan") -> dict | None:
    """The time plan (or seed cap) a study in ``out`` was started with (a rerun resumes that plan, not a new one)."""
    from transferlab.results import read_study

    if out is None or not (Path(out) / "study.json").exists():
        return None
    return read_study(out).get(key)


def _estimate(prep: Prepared, configs: list[Strategy], done: set):
    from transferlab.estimate import estimate

    config = prep.config
    first = [s for s in plan(config, configs, config.seed_order()[: config.looks()[0]]) if s.trial_id not in done]
    est = estimate(prep, first, [s for s in plan(config, configs) if s.trial_id not in done])
    est.notes += [f"Size {d['size']} per class left out: {d['reason']}" for d in prep.sizes_dropped]
    return est


@keeps_threads
def estimate_study(model, data, config: StudyConfig | None = None, out: str | Path | None = None):
    """The checks of ``run_study`` and its cost estimate, without training (``--dry-run``): an ``Estimate``."""
    from transferlab.pipeline import check_folder, resume_modes
    from transferlab.results import TrialStore

    config = config or StudyConfig()
    if out is not None:
        from transferlab.folder_lock import check_folder_path

        check_folder_path(Path(out))
    # No folder: a dry run writes nothing. The profile runs only when the plan needs it (--depths auto).
    prep = preflight(model, data, config, None, measure=config.depths == "auto" or config.time_budget is not None)
    prep, configs, seed_cap = _seed_cap(prep, strategies(prep.config, prep), out)
    prep, configs, time_plan = _fit_time(prep, configs, out)
    done: set = set()
    if out is not None:
        check_folder(Path(out), prep.model_key, prep.data_key, prep.config,
                     **resume_modes(prep.backbone, prep.data, prep.config, prep.device))
        if (Path(out) / "trials.jsonl").exists():
            done = TrialStore(Path(out) / "trials.jsonl").done_ids()
    est = _estimate(prep, configs, done)
    if time_plan is not None:
        est.notes.append(time_plan.text())
    if seed_cap is not None and "worst_s" in seed_cap:
        est.notes.append(f"Seeds: up to {seed_cap['max_seeds']} where a verdict is open ({seed_cap['why']})")
    return est


def _zero_shot(prep: Prepared, runner: Runner) -> list[dict]:
    stored = [r for r in runner.stored.values() if r["strategy"] == "zero_shot"]
    if stored:
        return stored[:1]
    rec = zero_shot(prep.backbone, prep.data, prep.config.budget.eval_batch_size, prep.device)
    if rec is None:
        return []
    runner.record(rec.to_dict())
    return [rec.to_dict()]


def _save_best(result: StudyResult, prep: Prepared, folder, meta) -> dict:
    """Retrain the recommended configuration (first seed, largest size; deterministic) and save it."""
    from transferlab.saving import save_model

    rec = result.analysis.recommendation
    if not rec.label:
        raise UserError("no strategy finished, so there is no model to save", "look at the failed trials in the report")
    seed = prep.config.seed_order()[0]
    record = next(r for r in result.trials if r["label"] == rec.label and r["n_train"] == rec.n_train and r["seed"] == seed)
    spec = TrialSpec(record["strategy"], record["params"], seed, record["n_train"], record["label"])
    kept: list = []
    # The study's own rules (successive halving when it used it), so the retrain chooses as the study's trial did.
    again = run_trial(spec, prep.backbone, prep.model_key, prep.data, prep.config.budget, None, prep.device, keep=kept,
                      halving=prep.config.halving, members=batch_mode(prep.config.batch_members, prep.device)[0])
    path = save_model(kept[0], prep.backbone, folder, prep.data.class_names, spec.label, (meta or {}).get("model_options"),
                      table=prep.data.split_info)
    return {"path": str(path), "label": spec.label, "seed": seed, "n_train": spec.n_train, "test_acc": again.test_acc,
            "study_test_acc": record["test_acc"], "chosen": again.chosen, "study_chosen": record.get("chosen")}


def _write_outputs(result: StudyResult, report: bool) -> None:
    from transferlab.analysis.tables import summary_csv

    out = result.out_dir
    write_json_atomic(out / "study.json", result.study)
    write_json_atomic(out / "analysis.json", result.analysis.to_dict())
    write_atomic(out / "summary.csv", summary_csv(result.analysis))
    if report:
        from transferlab.report.html import write_report

        result.report_path = write_report(out)
