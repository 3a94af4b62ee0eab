"""Which pretrained model, or none: one study per source on the same target, then the sources compared.

Every source runs the same strategies on the same splits, sizes and seeds, each in its own study folder
(``OUT/<name>/``: its own resume, cache and executors). The scratch control depends only on the
architecture and the inputs it sees, so sources that share both share their scratch trials: each is run once
and adopted by the others (marked ``shared_from``). ``OUT/sources.json`` lists the sources,
``OUT/comparison.json`` holds the comparison (``analysis.sources``) and ``OUT/report.html`` shows it.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace

import torch

from transferlab.config import StudyConfig
from transferlab.errors import UserError
from transferlab.execution import StudyCallback, run_study
from transferlab.pipeline import Prepared, check_folder, preflight, resume_modes
from transferlab.analysis.sources import compare_studies, load_sources, read_sources
from transferlab.results import SCHEMA_VERSION, StudyResult, write_json_atomic


@dataclass
class Source:
    """One pretrained model of a multi-source study, and the target as that model reads it."""

    name: str
    model: object  # a Backbone, an nn.Module or a sources.ModelSource
    data: object  # a TargetData (its images sized for this model), (X, y) arrays or a torch Dataset
    meta: dict = field(default_factory=dict)


@dataclass
class SourcesResult:
    out_dir: Path | None
    studies: list[StudyResult]
    comparison: object  # analysis.sources.SourceComparison
    report_path: Path | None = None


def source_name(spec: str, taken: set[str] = frozenset()) -> str:
    """A folder-safe, unique name for a model spec: ``timm:resnet18`` -> ``timm-resnet18``."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-.") or "model"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def scratch_group(prep: Prepared) -> str:
    """Same key, same scratch trials: the architecture re-initialised (seed 0) with the target's head, and the
    prepared target's fingerprint (a different input size or normalisation is a different control)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fresh = prep.backbone.clone().reinit().replace_head(prep.data.n_classes)
    return hashlib.sha1(f"{fresh.fingerprint()}-{prep.data_key}".encode()).hexdigest()[:12]


def _splits_key(prep: Prepared) -> str:
    d = prep.data
    h = hashlib.sha1(d.train.y.numpy().tobytes() + d.val.y.numpy().tobytes())
    h.update(d.test.label_digest().encode())
    h.update((d.holdout.y.numpy().tobytes() if d.holdout is not None else b"") + str((d.per_seed, d.test_per_seed)).encode())
    return h.hexdigest()


def check_sources(sources: list[Source], config: StudyConfig, out: Path | None) -> list[dict]:
    """Every refusal for every source, before anything is written; returns what the comparison needs."""
    names = [s.name for s in sources]
    if len(sources) < 2:
        raise UserError("a multi-source study needs at least two models", "give --model more than once")
    if len(set(names)) != len(names):
        raise UserError(f"two sources share the name '{next(n for n in names if names.count(n) > 1)}'",
                        "give each [[models]] entry its own name")
    if out is not None and (out / "sources.json").exists():
        old = [i["name"] for i in read_sources(out)["sources"]]
        if old != names:
            raise UserError(f"{out} holds a study of other sources ({', '.join(old)})",
                            "choose a new --out folder, or give the same models in the same order")
    info, splits = [], None
    resumed = out is not None and any((out / s.name / "study.json").exists() for s in sources)
    for s in sources:
        prep = preflight(s.model, s.data, config, out / s.name if out else None, measure=False)
        check_folder(prep.out, prep.model_key, prep.data_key, prep.config,  # its settings too, before any source runs
                     **resume_modes(prep.backbone, prep.data, prep.config, prep.device))
        key = _splits_key(prep)
        if splits is not None and key != splits:
            raise UserError(f"the target loads into other splits for source '{s.name}' than for '{sources[0].name}'",
                            "give every model the same data spec and data options")
        splits = key
        info.append({"name": s.name, "folder": s.name, "spec": prep.backbone.spec.get("source", s.name),
                     "scratch_group": scratch_group(prep), "arch": prep.backbone.spec.get("arch") or s.name,
                     "model_params": sum(p.numel() for p in prep.backbone.parameters()), "backbone": prep.backbone})
        if _measures_cap(config) and not resumed:  # a rerun keeps its folders' cap (shared_cap)
            from transferlab.execution import strategies
            from transferlab.timebudget import worst_by_cap

            # Every depth freeze_k may take, not only those the profile would pick (not measured here): an upper bound.
            info[-1]["worst_s"] = worst_by_cap(prep, strategies(replace(prep.config, depths="all"), prep))
        del prep  # each source's prepared data is made again when its study runs: only one is held at a time
    return info


def run_sources(sources: list[Source], config: StudyConfig | None = None, out: str | Path | None = None,
                callbacks: list[StudyCallback] | tuple = (), report: bool = True, meta: dict | None = None,
                wait: bool = False) -> SourcesResult:
    """Run the same study on every source, sharing scratch per architecture, and compare the sources.

    Rerunning into the same ``out`` resumes every source's study; ``wait``: wait for another process running in
    ``out`` instead of refusing.
    """
    from transferlab.folder_lock import study_lock

    with study_lock(out, wait, lambda holder: [cb.on_wait(holder) for cb in callbacks]):
        return _run_sources(sources, config or StudyConfig(), Path(out) if out else None, callbacks, report, meta, wait)


def _measures_cap(config: StudyConfig) -> bool:
    return config.max_seeds == "auto" and config.sequential and config.estimate and config.time_budget is None


def shared_cap(config: StudyConfig, info: list[dict], out: Path | None) -> tuple[StudyConfig, dict | None]:
    """One seed cap for every source, since they are compared seed by seed under one design: for ``max_seeds =
    "auto"``, the largest cap whose worst case summed over the sources fits ``seed_budget``
    (``timebudget.choose_cap``).  A rerun keeps the cap its sources' folders were started with."""
    from transferlab.results import read_study
    from transferlab.timebudget import auto_seed_cap, choose_cap

    if config.max_seeds == "auto" and config.sequential and out is not None and config.time_budget is None:
        caps = {read_study(out / i["folder"])["config"]["max_seeds"] for i in info
                if (out / i["folder"] / "study.json").exists()}
        if len(caps) > 1:  # folders started before sources shared a cap: each resumes its own
            return config, None
        if caps:
            cap = caps.pop()
            stored = read_sources(out).get("seed_cap") if (out / "sources.json").exists() else None
            return replace(config, max_seeds=cap), (stored if stored and stored.get("max_seeds") == cap else
                                                   {"auto": True, "max_seeds": cap, "why": "the folders' own cap"})
    # A fixed design or a number: as given. A time budget: each source's plan trims seeds from 24 on its own (its
    # time plan resumes it). No estimate: the first cap.
    if not _measures_cap(config):
        return auto_seed_cap(SimpleNamespace(config=config), [], None)
    total = {m: sum(i["worst_s"][m] for i in info) for m in info[0]["worst_s"]}
    return choose_cap(config, total, f", summed over the {len(info)} sources,")


def _run_sources(sources: list[Source], config: StudyConfig, out: Path | None, callbacks, report: bool,
                 meta: dict | None, wait: bool) -> SourcesResult:
    info = check_sources(sources, config, out)
    config, cap = shared_cap(config, info, out)
    for i in info:
        i.pop("worst_s", None)
    scratch: dict[str, dict] = {}  # scratch group -> {trial_id: record}
    studies = []
    for s, i in zip(sources, info):
        shared = [{**r, "shared_from": r.get("shared_from") or r["source"]} for r in scratch.get(i["scratch_group"], {}).values()]
        res = run_study(i.pop("backbone"), s.data, config, out / s.name if out else None, callbacks, report,
                        {**(meta or {}), **s.meta, "source": s.name, **({"seed_cap": cap} if cap else {})},
                        shared=shared, wait=wait)
        own = {r["trial_id"]: {**r, "source": r.get("source", s.name)} for r in res.trials if r["strategy"] == "scratch"}
        scratch.setdefault(i["scratch_group"], {}).update(own)
        studies.append(res)
    comparison = compare_studies(info, [r.study for r in studies], [r.trials for r in studies])
    result = SourcesResult(out, studies, comparison)
    if out:
        write_json_atomic(out / "sources.json", {"schema": SCHEMA_VERSION, "kind": "sources", "sources": info,
                                                  "config": studies[0].study["config"] if studies else config.to_dict(),
                                                  **({"seed_cap": cap} if cap else {}), **(meta or {})})
        write_json_atomic(out / "comparison.json", comparison.to_dict())
        if report:
            from transferlab.report.sources import write_sources_report

            result.report_path = write_sources_report(out)
    return result


def estimate_sources(specs: list[tuple[str, dict, str | None]], data_spec: str, data_options: dict,
                     config: StudyConfig | None = None, out: str | Path | None = None) -> str:
    """``--dry-run``: every check of a study (of each source), and what it would cost, as lines of text.
    Scratch is counted once per scratch group, as a multi-source study runs it."""
    from transferlab.estimate import clock
    from transferlab.execution import estimate_study

    sources = sources_from_specs(specs, data_spec, data_options)
    config = config or StudyConfig()
    out = Path(out) if out else None
    info = check_sources(sources, config, out) if len(sources) > 1 else [{"scratch_group": None}]
    lines, seen, first, most = [], set(), 0.0, 0.0
    if len(sources) > 1:
        config, cap = shared_cap(config, info, out)
        if cap and "worst_s" in cap:
            lines.append(f"Seeds: up to {cap['max_seeds']} where a verdict is open, for every source ({cap['why']}).")
    for s, i in zip(sources, info):
        est = estimate_study(i.get("backbone", s.model), s.data, config, (out / s.name if len(sources) > 1 else out) if out else None)
        shared = i["scratch_group"] in seen and i["scratch_group"] is not None
        seen.add(i["scratch_group"])
        f = est.wall(est.first_s - (est.per_label.get("scratch", 0.0) if shared else 0.0))
        m = est.wall(est.max_s - (est.per_label_max.get("scratch", 0.0) if shared else 0.0))
        first, most = first + f, most + m
        lines.append((f"{s.name}: " if len(sources) > 1 else "") + est.text() + (" (scratch shared: not counted)" if shared else ""))
    if len(sources) > 1:
        lines.append(f"All {len(sources)} sources: about {clock(first)}; up to {clock(most)}.")
    return "\n".join(lines + ["Dry run: nothing was trained."])


def sources_from_specs(specs: list[tuple[str, dict, str | None]], data_spec: str, data_options: dict) -> list[Source]:
    """(model spec, options, name or None) each -> a Source with the data read for that model."""
    from transferlab.sources import build_checked, load_data, load_model

    out, taken = [], set()
    for spec, options, name in specs:
        name = name or source_name(spec + (f"-{Path(options['weights']).stem}" if options.get("weights") else ""), taken)
        taken.add(name)
        src = load_model(spec, **options)
        data = load_data(data_spec, model=src, **data_options)
        out.append(Source(name, build_checked(src, data, f"model '{spec}'"), data, {"model_options": options}))
    return out


__all__ = ["Source", "SourcesResult", "estimate_sources", "load_sources", "run_sources", "scratch_group", "source_name",
           "sources_from_specs"]
