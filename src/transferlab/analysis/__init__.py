"""Analyses: pure functions from typed trial records (``results.TrialRecord``; dicts read from ``trials.jsonl`` are
converted) to a typed ``Analysis`` (analysis/types.py). No torch."""
from __future__ import annotations

import re

from transferlab.analysis.answer import answer
from transferlab.analysis.convergence import convergence, head_vs_probe, sweep_caveat
from transferlab.analysis.dynamics import first_epochs, flags
from transferlab.analysis.gain import accuracy_rows, curves, gains, race, speedups
from transferlab.analysis.keep import keep
from transferlab.analysis.layers import moved, score_validation
from transferlab.analysis.recommend import recommend
from transferlab.analysis.stats import Design, Verdict
from transferlab.analysis.sweep import depth_profile, size_sweep
from transferlab.analysis.types import Analysis
from transferlab.results import TrialRecord, as_records


def decided_share(gain_rows: list[dict]) -> dict:
    """How many comparisons with scratch were decided (better, worse or equivalent)."""
    counts = {v: sum(1 for g in gain_rows if g["verdict"] == v) for v in (x.value for x in Verdict)}
    total = sum(counts.values())
    return {**counts, "total": total, "decided": total - counts["inconclusive"],
            "share": (total - counts["inconclusive"]) / total if total else None}


def _mark_stopped(gain_rows: list[dict], design: Design) -> None:
    """An inconclusive comparison that the seed cap cannot decide (at its observed mean and SD it would need more
    seeds than the cap) got no more seeds on purpose: say so beside the seeds that would decide it."""
    cap = design.looks[-1]
    for g in gain_rows:
        needed = g["gain"].get("seeds_needed")
        if g["verdict"] == Verdict.INCONCLUSIVE and needed is not None and needed > cap:
            g["gain"]["stopped"] = f"the cap of {cap} seeds cannot decide it"


def variance_note(records: list[TrialRecord], study: dict) -> str:
    """Which sources of variance the intervals cover (Bouthillier et al. 2021: say which ones you vary)."""
    trained = [r for r in records if r.trained]
    sizes = {r.n_train for r in trained}
    splits = (study.get("data") or {}).get("splits", {})
    n_test = (study.get("data") or {}).get("n_test")
    if splits.get("per_seed") and splits.get("test_per_seed", True):
        text = ("What the intervals cover: each seed draws its own validation, held-out and test examples (dealt "
                "again from the same pooled rows, stratified, in the same sizes), a new training subset, head "
                "initialisation, batch order and augmentation. So an interval also covers which examples landed in "
                "test. The price: an example in one seed's test split is in other seeds' validation, so the choice "
                "across seeds has seen every pooled example.")
    else:
        redrawn = ("its own validation and held-out examples (dealt again from their pooled rows), "
                   if splits.get("per_seed") else "")
        text = (f"What the intervals cover: each seed draws {redrawn}a new training subset, head initialisation, batch "
                f"order and augmentation. The test split{f' ({n_test} examples)' if n_test else ''} is one for the "
                "whole study, so no choice ever read a row that was scored on test; which examples landed in it is "
                "covered by a per-example (McNemar-type) term added to each comparison's test interval (a "
                "strategy's own accuracy interval covers the seeds only).")
    if trained and all(r.holdout_acc is None for r in trained):
        text += (" Validation was too small to halve, so strategies are ranked on the validation accuracy that also "
                 "chose their learning rates and checkpoints: a maximum, which favours the strategy that tried more.")
    if "all" in sizes:
        text += (" At size 'all' every seed trains on the whole pool: there the seeds vary only the initialisation, "
                 "the batch order and the augmentation.")
    return text


def _natural(text: str) -> tuple:
    """'freeze_k(k=2)' before 'freeze_k(k=10)'."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def canonical(records: list[TrialRecord], study: dict) -> list[TrialRecord]:
    """Records in one order whatever order they arrive in (parallel workers finish in any order, and a resumed
    study's file holds several runs): strategies as configured, then label, size as configured, seed. So the
    analysis, its tables and every tie it breaks are the same from the live study and from trials.jsonl."""
    cfg = study.get("config") or {}
    names = [s.get("name") if isinstance(s, dict) else s for s in cfg.get("strategies") or []]
    sizes = [str(n) for n in cfg.get("sizes") or []] if isinstance(cfg.get("sizes"), list) else []

    def key(r: TrialRecord):
        rank = names.index(r.strategy) if r.strategy in names else (-1 if r.strategy == "zero_shot" else len(names))
        size = sizes.index(str(r.n_train)) if str(r.n_train) in sizes else len(sizes)
        return rank, _natural(r.label), size, str(r.n_train), r.seed

    return sorted(records, key=key)


def analyze(records, study: dict) -> Analysis:
    records = canonical(as_records(records), study)
    design = Design.from_dict(study.get("design"))
    acc = accuracy_rows(records)
    gain = gains(records, design)
    # What the sequential design read (validation), kept beside each test verdict: why a comparison's seeds
    # stopped short of the cap, so the undecided table advises a rerun that would really run them.
    on_val = {(g["label"], g["n_train"]): g["verdict"] for g in gains(records, design, on="val")}
    for g in gain:
        g["val_verdict"] = on_val.get((g["label"], g["n_train"]))
    raced = race(records, design)
    _mark_stopped(gain, design)
    speed = speedups(records)
    sweep = size_sweep(acc, gain, design.alpha) if acc else {"sizes": [], "scratch_catches_up_at": None, "text": ""}
    zero = [r.to_dict() for r in records if r.strategy == "zero_shot" and r.status == "ok"]
    analysis = {
        "design": design.to_dict(), "decided": decided_share(gain), "race": raced,
        "accuracy": acc, "gains": gain, "speedups": speed, "curves": curves(records), "sweep": sweep,
        "depth": depth_profile(acc, {name: axis for name, axis in study.get("depth_axes", {"freeze_k": "k"}).items()
                                     if name not in (study.get("keep_axes") or {})}),
        "keep": keep(acc, raced, gain, study, design.margin), "zero_shot": zero[0] if zero else None,
        "failed": [{"label": r.label, "n_train": r.n_train, "seed": r.seed, "status": r.status,
                    "error": r.error.splitlines()[0] if r.error else None,
                    "diverged_step": r.diverged_step} for r in records if r.status != "ok"],
    }
    analysis["variance_note"] = variance_note(records, study)
    analysis["convergence"] = convergence(records)
    analysis["sweep"]["text"] = " ".join(t for t in (sweep["text"], sweep_caveat(analysis["convergence"])) if t)
    analysis["capacity_notes"] = head_vs_probe(records, design.margin)
    analysis["profile_validation"] = score_validation(study.get("profile"), analysis["depth"])
    analysis["moved"] = moved(records)
    analysis["first_epochs"] = first_epochs(records)
    analysis["slow_start_flags"] = flags(analysis["first_epochs"], study)
    analysis["recommendation"] = recommend(analysis, study)
    analysis["answer"] = answer(analysis)
    return Analysis.from_dict(analysis)


__all__ = ["Analysis", "analyze"]
