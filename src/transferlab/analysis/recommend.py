"""The recommendation: the strategy to use, and the measured numbers behind it.

Rule: at the largest target size studied (the data the user actually has),
take the strategy with the best mean test accuracy; every strategy whose paired
difference from it is inside the noise is tied with it, and among the tied we
recommend the one that trains the fewest parameters (cheapest, least to
overfit).  Then we place the task in the CS231n data-size x similarity table
and say whether the measurement agrees with that rule of thumb.
"""
from __future__ import annotations

import math

from transferlab.analysis.gain import SCRATCH, size_key
from transferlab.analysis.stats import paired, verdict

# A cheaper strategy replaces the best only if tied with it AND this close in mean accuracy:
# with few seeds the CI is wide, and a tie alone would let a much worse mean win.
PRACTICAL = 0.01

# CS231n's "small dataset" has no number; we call a target small below this many labels per class.
SMALL_PER_CLASS = 100

TABLE = {  # (data amount, similarity) -> what the table of seed 002 says
    ("low", "low"): "unfreeze more layers of the pretrained model",
    ("low", "high"): "unfreeze fewer layers of the pretrained model",
    ("high", "low"): "initialise with pretrained weights and train completely",
    ("high", "high"): "fine-tune completely",
}


def _pp(x: float) -> str:
    return f"{100 * x:+.1f} pp"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(ci: dict) -> str:
    if not math.isfinite(ci.get("lo", math.nan)):
        return "CI n/a with one seed"
    return f"95% CI {100 * ci['lo']:+.1f} to {100 * ci['hi']:+.1f} pp"


def _per_seed(row: dict) -> dict[int, float]:
    return {int(s): a for s, a in row["per_seed"]}


# Proxy A-distance runs from 0 (the domain classifier cannot tell source from target) to 2 (it always can).
A_DISTANCE_HIGH_SIMILARITY = 1.0


def similarity(study: dict) -> dict | None:
    """The domain distance on pretrained features when source data was given, else the probe-vs-random measure."""
    a = (study.get("profile") or {}).get("a_distance")
    if a is not None:
        return {"method": "proxy_a_distance", "a_distance": a, "level": "high" if a < A_DISTANCE_HIGH_SIMILARITY else "low",
                "summary": f"proxy A-distance {a:.2f} between source and target on the pretrained features"}
    return study.get("similarity")


def placement(study: dict, per_class: float) -> dict:
    data_level = "low" if per_class < SMALL_PER_CLASS else "high"
    sim = similarity(study)
    level = (sim or {}).get("level", "unknown")
    return {"data": data_level, "per_class": per_class, "similarity": level, "rule": TABLE.get((data_level, level)),
            "similarity_detail": sim}


def _agrees(place: dict, choice: dict, n_blocks: int | None) -> bool | None:
    """Does the measured winner unfreeze 'few' (frozen >= half) or 'more/all' layers, as the table says?"""
    if place["rule"] is None or not n_blocks:
        return None
    if choice["strategy"] == SCRATCH:
        return False  # the table assumes transfer helps; a scratch win contradicts every cell
    frozen_few = choice["frozen_blocks"] >= n_blocks / 2
    return frozen_few if "fewer" in place["rule"] else not frozen_few


def recommend(analysis: dict, study: dict) -> dict:
    acc = analysis["accuracy"]
    if not acc:
        return {"label": None, "text": "No trial has finished yet, so there is nothing to recommend."}
    size = max({r["n_train"] for r in acc}, key=size_key)
    rows = [r for r in acc if r["n_train"] == size]
    best = max(rows, key=lambda r: r["test_acc"]["mean"])
    tied = [r for r in rows if r is best or verdict(paired(_per_seed(r), _per_seed(best))) == "tie"]
    close = [r for r in tied if best["test_acc"]["mean"] - r["test_acc"]["mean"] <= PRACTICAL]
    choice = min(close, key=lambda r: (r["trainable_params"], -r["test_acc"]["mean"]))
    gain = next((g for g in analysis["gains"] if g["label"] == choice["label"] and g["n_train"] == size), None)
    speed = next((s for s in analysis["speedups"] if s["label"] == choice["label"] and s["n_train"] == size), None)
    n_classes = len(study.get("data", {}).get("class_names", [])) or 1
    place = placement(study, choice["n_train_total"] / n_classes)
    agrees = _agrees(place, choice, len(study.get("model", {}).get("blocks", [])))

    parts = [f"Use {choice['label']}: at {size} examples per class ({choice['n_train_total']} in all) it reaches "
             f"{_pct(choice['test_acc']['mean'])} test accuracy over {len(choice['seeds'])} seeds, training "
             f"{choice['trainable_params']:,} parameters."]
    if choice is not best:
        d = paired(_per_seed(choice), _per_seed(best))
        parts.append(f"The top mean was {best['label']} at {_pct(best['test_acc']['mean'])}, but the difference "
                     f"({_pp(-d['mean'])}, {_ci({'lo': -d['hi'], 'hi': -d['lo']})}) is inside the noise and under "
                     f"{100 * PRACTICAL:.0f} pp, so the cheaper one is preferred.")
    others = [r["label"] for r in tied if r is not choice]
    if others:
        parts.append(f"Statistically tied with it at {len(best['seeds'])} seeds: {', '.join(others)}"
                     + ("; more seeds would separate them." if len(others) > 2 else "."))
    if gain:
        word = {"better": "a real gain", "worse": "a real loss", "tie": "a tie: transfer did not measurably change accuracy",
                "inconclusive": "inconclusive"}[gain["verdict"]]
        parts.append(f"Against training the same architecture from scratch the gain is {_pp(gain['gain']['mean'])} "
                     f"({_ci(gain['gain'])}): {word}.")
    elif choice["strategy"] == SCRATCH:
        parts.append("Training from scratch is as good as any reuse of the pretrained weights here.")
    if speed and speed["speedup"]:
        parts.append(f"It reaches scratch's best validation accuracy {speed['speedup']:.1f}x sooner in epochs "
                     f"({speed['reached']}/{speed['seeds']} seeds reached it).")
    elif speed:
        parts.append(f"It never reached scratch's best validation accuracy ({speed['reached']}/{speed['seeds']} seeds).")
    catch = analysis["sweep"]["scratch_catches_up_at"]
    verdicts = {r["verdict"] for r in analysis["sweep"]["sizes"]}
    if verdicts <= {"inconclusive", None}:
        parts.append("With one seed the size sweep cannot separate transfer from noise; run 3 or more seeds.")
    elif catch is not None and catch != min((r["n_train"] for r in acc), key=size_key):
        parts.append(f"In the size sweep scratch catches up from {catch} examples per class on.")
    elif catch is None:
        parts.append("In the size sweep scratch never catches up: some transfer strategy is measurably better at every size.")
    else:
        parts.append("In the size sweep no transfer strategy is measurably better than scratch at any size.")
    if place["rule"]:
        sim = place["similarity_detail"] or {}
        parts.append(f"The task has {place['data']} data ({place['per_class']:.0f} per class) and {place['similarity']} "
                     f"similarity ({sim.get('summary', 'measured')}); the CS231n table says: {place['rule']}. "
                     + ("The measurement agrees." if agrees else "The measurement disagrees: trust the measurement."
                        if agrees is False else ""))
    else:
        parts.append(f"The task has {place['data']} data ({place['per_class']:.0f} per class); similarity to the source "
                     "was not measured, so the CS231n table cannot be placed.")
    return {"label": choice["label"], "strategy": choice["strategy"], "params": choice["params"], "n_train": size,
            "tied_with_best": [r["label"] for r in tied], "placement": place, "agrees_with_table": agrees,
            "text": " ".join(p for p in parts if p)}
