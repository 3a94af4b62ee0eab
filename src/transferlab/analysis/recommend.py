"""The recommendation: the strategy to use, and the measured numbers behind it.

Rule, on validation data only: at the largest target size studied (the data the
user actually has), the leader is the race's (``leader.leader`` on the held-out half
of validation, paired over the seeds each pair shares).  Strategies decided *equivalent* to it on validation (paired over
seeds, inside the margin) are as good, and among those we recommend the one that
trains the fewest parameters (cheapest, least to overfit).  Only then is the
test split's evidence quoted: the choice's test accuracy and its paired test gain
over scratch, with that comparison's verdict.  Then we place the task in the
CS231n data-size x similarity table and say whether the measurement agrees.
"""
from __future__ import annotations

import math

from transferlab.analysis.convergence import caveat
from transferlab.analysis.gain import SCRATCH, size_key
from transferlab.analysis.stats import MAX_SEEDS_ESTIMATE, Verdict, interval_phrase, more_minutes, seeds_phrase

# CS231n's "small dataset" has no number; we call a target small below this many labels per class.
SMALL_PER_CLASS = 100

# CS231n ("Transfer Learning" notes, "When and how to fine-tune?"): (data amount, similarity) -> its advice, and
# which layers that advice trains.  The table in seed 002's answer, credited to CS231n, says "unfreeze more layers"
# for little, dissimilar data; CS231n itself advises a linear classifier on activations from earlier in the network.
TABLE = {
    ("low", "low"): ("train a linear classifier (an SVM) on activations from earlier in the network", "earlier"),
    ("low", "high"): ("train a linear classifier on the top-layer features; fine-tuning risks overfitting", "fewer"),
    ("high", "low"): ("initialise with the pretrained weights and fine-tune the whole network", "all"),
    ("high", "high"): ("fine-tune the whole network", "all"),
}


def _dropped(c: dict) -> str:
    n = c.get("dropped") or 0
    return f" ({n} seed{'s' if n != 1 else ''} left out of the pairing because a trial failed or diverged)" if n else ""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"




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
    rule, unfreeze = TABLE.get((data_level, level), (None, None))
    return {"data": data_level, "per_class": per_class, "similarity": level, "rule": rule, "unfreeze": unfreeze,
            "cell": [data_level, level], "similarity_detail": sim}


def _agrees(place: dict, choice: dict, model_params: int | None) -> bool | None:
    """Does the measured winner train few weights (at most half the pretrained ones: a classifier on features, as
    'fewer' and 'earlier' ask) or the whole network ('all'), as the table says? Counted in parameters, not blocks, so LoRA's adapters or a tuned last block count as few."""
    if place["rule"] is None or not model_params:
        return None
    if choice["strategy"] == SCRATCH:
        return False  # the table assumes transfer helps; a scratch win contradicts every cell
    few = choice["trainable_params"] <= model_params / 2
    return few if place["unfreeze"] in ("fewer", "earlier") else not few


GAIN_WORDS = {
    Verdict.BETTER: "measurably better than scratch",
    Verdict.WORSE: "measurably worse than scratch",
    Verdict.EQUIVALENT: "equivalent to scratch (inside the ±{m} pp margin)",
    Verdict.INCONCLUSIVE: "inconclusive against scratch",
}


def _cap(study: dict) -> int | None:
    looks = (study.get("design") or {}).get("looks")
    return looks[-1] if looks else None


def recommend(analysis: dict, study: dict) -> dict:
    acc = analysis["accuracy"]
    if not acc:
        return {"label": None, "text": "No trial has finished yet, so there is nothing to recommend."}
    margin_pp = 100 * analysis.get("design", {}).get("margin", 0.01)
    size = max({r["n_train"] for r in acc}, key=size_key)
    rows = {r["label"]: r for r in acc if r["n_train"] == size}
    race = next(x for x in analysis["race"] if x["n_train"] == size)
    leader = rows[race["leader"]]
    vs = {c["label"]: c for c in race["vs_leader"]}
    equivalent = [rows[lab] for lab, c in vs.items() if c["verdict"] == Verdict.EQUIVALENT]
    contenders = [lab for lab, c in vs.items() if c["verdict"] == Verdict.INCONCLUSIVE]
    choice = min([leader, *equivalent], key=lambda r: (r["trainable_params"], -r["best_val_acc"]))
    gain = next((g for g in analysis["gains"] if g["label"] == choice["label"] and g["n_train"] == size), None)
    speed = next((s for s in analysis["speedups"] if s["label"] == choice["label"] and s["n_train"] == size), None)
    n_classes = len(study.get("data", {}).get("class_names", [])) or 1
    place = placement(study, choice["n_train_total"] / n_classes)
    agrees = _agrees(place, choice, study.get("model", {}).get("params"))

    lead = _lead(analysis, study, choice, leader, vs, gain, size, margin_pp)
    details = []
    if contenders:
        closest = min((vs[lab] for lab in contenders), key=lambda c: c["seeds_needed"] or 10**6)
        details.append(f"Not yet separated from the best on validation: {', '.join(contenders)} "
                       f"(inconclusive; the closest {seeds_phrase(closest['seeds_needed'])}).")
    if not gain and choice["strategy"] == SCRATCH:
        better = [g["label"] for g in analysis["gains"] if g["n_train"] == size and g["verdict"] == Verdict.BETTER]
        if better:
            details.append(f"On test, though, {', '.join(better)} {'is' if len(better) == 1 else 'are'} measurably better "
                           "than scratch; validation and test disagree, so run more seeds before trusting either.")
    if speed and speed["speedup"]:
        details.append(f"It reaches scratch's best validation accuracy {speed['speedup']:.1f}x sooner in optimizer steps "
                       f"({speed['reached']}/{speed['seeds']} seeds reached it).")
    elif speed:
        details.append(f"It never reached scratch's best validation accuracy ({speed['reached']}/{speed['seeds']} seeds).")
    details.append(analysis["sweep"].get("text", ""))
    details.append(_placement_text(place, agrees))
    return {"label": choice["label"], "strategy": choice["strategy"], "params": choice["params"], "n_train": size,
            "leader": leader["label"], "equivalent_to_leader": [r["label"] for r in equivalent],
            "contenders": contenders, "gain_verdict": gain["verdict"] if gain else None,
            "placement": place, "agrees_with_table": agrees, "text": " ".join(p for p in lead if p),
            "details": " ".join(p for p in details if p), "undecided": undecided(analysis, _cap(study))}


def _lead(analysis: dict, study: dict, choice: dict, leader: dict, vs: dict, gain: dict | None, size,
          margin_pp: float) -> list[str]:
    """At most three sentences, what was decided first: what to use, its gain over scratch, what is still open."""
    seeds = len(choice["seeds"])
    at = f"with all {choice['n_train_total']} training examples" if size == "all" else \
        f"at {size} examples per class ({choice['n_train_total']} in all)"
    cheaper = ""
    if choice is not leader:
        d = vs[choice["label"]]
        cheaper = (f", decided within ±{margin_pp:.0f} pp of the best of the others (the leader is {leader['label']}; "
                   f"against {d.get('versus') or leader['label']}: {interval_phrase(d)}) and training fewer parameters")
    lead = [f"Use {choice['label']}: {at} it was chosen on held-out validation accuracy ({_pct(choice['best_val_acc'])})"
            f"{cheaper}, and scores {_pct(choice['test_acc']['mean'])} on the test split over {seeds} "
            f"seed{'s' if seeds != 1 else ''}, training {choice['trainable_params']:,} parameters."]
    if gain:
        word = GAIN_WORDS[gain["verdict"]].format(m=f"{margin_pp:.0f}")
        more = more_minutes(analysis["accuracy"], [choice["label"], SCRATCH], size, gain["gain"]["seeds_needed"])
        tail = f"; {seeds_phrase(gain['gain']['seeds_needed'], more)}" if gain["verdict"] == Verdict.INCONCLUSIVE else ""
        unconverged = caveat(analysis.get("convergence", []), [choice["label"], SCRATCH], size).strip()
        if unconverged:  # one sentence still: "This rests on ..." becomes its clause
            unconverged = "; t" + unconverged[1:-1]
        lead.append(f"On test, its paired gain over training the same architecture from scratch is "
                    f"{interval_phrase(gain['gain'])}: {word}{tail}{_dropped(gain['gain'])}{unconverged}.")
    elif choice["strategy"] == SCRATCH:
        lead.append("Training from scratch leads on validation: no reuse of the pretrained weights did better there.")
    d = analysis.get("decided") or {}
    if d.get("total"):
        lead.append(f"{d['decided']} of {d['total']} comparisons with scratch are decided"
                    + ("; the undecided ones, with the seeds that would decide each, are in the undecided table." if d["decided"] < d["total"] else "."))
    return lead


def undecided(analysis: dict, cap: int | None = None) -> list[dict]:
    """The inconclusive comparisons with scratch, as table rows: what it would take to decide each (``cap``: the
    study's seed cap)."""
    rows = []
    looks = (analysis.get("design") or {}).get("looks") or []
    for g in analysis["gains"]:
        if g["verdict"] != Verdict.INCONCLUSIVE:
            continue
        c = g["gain"]
        # a new study of the configuration and scratch runs every one of its seeds
        minutes = more_minutes(analysis["accuracy"], [g["label"], SCRATCH], g["n_train"], c.get("seeds_needed"), fresh=True)
        why = _why_short(c["n"], cap, len(looks) > 1, g.get("val_verdict"))
        rows.append({"label": g["label"], "n_train": g["n_train"], "mean": c["mean"], "lo": c["lo"], "hi": c["hi"],
                     "n": c["n"], "seeds_needed": c.get("seeds_needed"), "stopped": c.get("stopped"), "minutes": minutes,
                     "what": decide_phrase(g["label"], g["n_train"], c.get("seeds_needed"), minutes, why)})
    return rows


def _why_short(n: int, cap: int | None, sequential: bool, val_verdict) -> str | None:
    """Why a comparison's seeds stopped short of the cap (None: they reached it, or the design is fixed)."""
    if not sequential or cap is None or n >= cap:
        return None
    if val_verdict not in (None, Verdict.INCONCLUSIVE):
        return f"validation decided it after {n} seeds, so it got no more"
    return f"its seeds stopped at {n}"


def decide_phrase(label: str, n_train, needed: int | None, minutes: float | None, short: str | None = None) -> str:
    """What would decide an inconclusive comparison on test, for the undecided table (the CLI and the report): a
    new study of that configuration and scratch at a fixed number of seeds, which runs every one of them (a
    larger cap would stop where validation stopped this one). ``short``: why its seeds stopped before the cap."""
    if needed is None:
        return "at least 3 seeds"
    if needed > MAX_SEEDS_ESTIMATE:
        return f"more than {MAX_SEEDS_ESTIMATE} seeds, or a larger test split"
    cost = "" if minutes is None else f", about {minutes:.0f} min" if minutes >= 1 else ", under a minute"
    size = "all" if n_train == "all" else n_train
    return ((f"{short}; " if short else "") + f"about {needed} seeds would decide it: rerun with --strategies "
            f"'scratch,{label}' --sizes {size} --seeds {needed} into a new folder{cost}")


def _placement_text(place: dict, agrees) -> str:
    if place["rule"]:
        sim = place["similarity_detail"] or {}
        return (f"The task has {place['data']} data ({place['per_class']:.0f} per class) and {place['similarity']} "
                f"similarity ({sim.get('summary', 'measured')}); the CS231n table says: {place['rule']}. "
                + ("The measurement agrees." if agrees else "The measurement disagrees: trust the measurement."
                   if agrees is False else ""))
    return (f"The task has {place['data']} data ({place['per_class']:.0f} per class); similarity to the source "
            "was not measured, so the CS231n table cannot be placed.")
