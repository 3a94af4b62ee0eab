"""Analyses: pure functions from trial records (plain dicts) to plain dicts. No torch."""
from __future__ import annotations

from transferlab.analysis.dynamics import first_epochs, flags
from transferlab.analysis.gain import accuracy_rows, curves, gains, speedups
from transferlab.analysis.layers import moved, score_validation
from transferlab.analysis.recommend import recommend
from transferlab.analysis.sweep import depth_profile, size_sweep


def analyze(records: list[dict], study: dict) -> dict:
    acc = accuracy_rows(records)
    gain = gains(records)
    speed = speedups(records)
    sweep = size_sweep(acc, gain) if acc else {"sizes": [], "scratch_catches_up_at": None}
    zero = [r for r in records if r["strategy"] == "zero_shot" and r["status"] == "ok"]
    analysis = {
        "accuracy": acc, "gains": gain, "speedups": speed, "curves": curves(records), "sweep": sweep,
        "depth": depth_profile(acc), "zero_shot": zero[0] if zero else None,
        "failed": [{"label": r["label"], "n_train": r["n_train"], "seed": r["seed"], "status": r["status"],
                    "error": (r.get("error") or "").splitlines()[0] if r.get("error") else None,
                    "diverged_epoch": r.get("diverged_epoch")} for r in records if r["status"] != "ok"],
    }
    analysis["profile_validation"] = score_validation(study.get("profile"), analysis["depth"])
    analysis["moved"] = moved(records)
    analysis["first_epochs"] = first_epochs(records)
    analysis["slow_start_flags"] = flags(analysis["first_epochs"], study)
    analysis["recommendation"] = recommend(analysis, study)
    return analysis


__all__ = ["analyze"]
