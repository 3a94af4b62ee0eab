"""Analyses: pure functions from trial records (plain dicts) to a typed ``Analysis`` (analysis/types.py). No torch."""
from __future__ import annotations

from transferlab.analysis.answer import answer
from transferlab.analysis.convergence import convergence, head_vs_probe, sweep_caveat
from transferlab.analysis.dynamics import first_epochs, flags
from transferlab.analysis.gain import accuracy_rows, curves, gains, race, speedups
from transferlab.analysis.layers import moved, score_validation
from transferlab.analysis.recommend import recommend
from transferlab.analysis.stats import Design
from transferlab.analysis.sweep import depth_profile, size_sweep
from transferlab.analysis.types import Analysis


def decided_share(gain_rows: list[dict]) -> dict:
    """How many comparisons with scratch were decided (better, worse or equivalent)."""
    counts = {v: sum(1 for g in gain_rows if g["verdict"] == v) for v in ("better", "worse", "equivalent", "inconclusive")}
    total = sum(counts.values())
    return {**counts, "total": total, "decided": total - counts["inconclusive"],
            "share": (total - counts["inconclusive"]) / total if total else None}


def _mark_stopped(gain_rows: list[dict], raced: list[dict]) -> None:
    """An inconclusive comparison whose strategy left the race (decided worse than the validation leader) got no
    more seeds on purpose: say so instead of quoting the seeds that would decide it."""
    out = {(c["label"], r["n_train"]) for r in raced for c in r["vs_leader"] if c["verdict"] == "worse"}
    for g in gain_rows:
        if g["verdict"] == "inconclusive" and (g["label"], g["n_train"]) in out:
            g["gain"]["stopped"] = "out of the race"


def analyze(records: list[dict], study: dict) -> Analysis:
    design = Design.from_dict(study.get("design"))
    acc = accuracy_rows(records)
    gain = gains(records, design)
    raced = race(records, design)
    _mark_stopped(gain, raced)
    speed = speedups(records)
    sweep = size_sweep(acc, gain) if acc else {"sizes": [], "scratch_catches_up_at": None, "text": ""}
    zero = [r for r in records if r["strategy"] == "zero_shot" and r["status"] == "ok"]
    analysis = {
        "design": design.to_dict(), "decided": decided_share(gain), "race": raced,
        "accuracy": acc, "gains": gain, "speedups": speed, "curves": curves(records), "sweep": sweep,
        "depth": depth_profile(acc, study.get("depth_axes", {"freeze_k": "k"})), "zero_shot": zero[0] if zero else None,
        "failed": [{"label": r["label"], "n_train": r["n_train"], "seed": r["seed"], "status": r["status"],
                    "error": (r.get("error") or "").splitlines()[0] if r.get("error") else None,
                    "diverged_step": r.get("diverged_step")} for r in records if r["status"] != "ok"],
    }
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
