"""The answer first: three lines a reader needs before any table (did transfer help here, what to use, how sure),
each from the study's own verdicts. Pure, on the analysis dict ``analyze`` builds."""
from __future__ import annotations

from transferlab.analysis.convergence import caveat
from transferlab.analysis.stats import Verdict, interval_phrase, more_minutes, seeds_phrase
from transferlab.analysis.sweep import HELPS, HURTS, NO_GAIN, UNDECIDED

STATUS_WORDS = {HELPS: "yes (some strategy is measurably better than scratch)",
                HURTS: "no (every transfer strategy is measurably worse than scratch)",
                NO_GAIN: "no (none is better than scratch; each is equivalent or worse)",
                UNDECIDED: "not decided yet (none is better so far; some comparisons are inconclusive)"}


SHORT = {HELPS: "yes", HURTS: "no, transfer is worse", NO_GAIN: "no", UNDECIDED: "not decided yet"}


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _sizes(rows: list[dict]) -> str:
    counts = [str(r["n_train"]) for r in rows if r["n_train"] != "all"]
    parts = [f"at {_join(counts)} per class"] if counts else []
    parts += [f"with all the data ({r['n_train_total']} examples)" for r in rows if r["n_train"] == "all"]
    return " and ".join(parts)


def helped(sweep: dict) -> str:
    rows = [r for r in sweep.get("sizes", []) if r.get("status")]
    if not rows:
        return "Did transfer help here? No comparison with scratch has finished yet."
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r["status"], []).append(r)
    if len(groups) == 1:
        return f"Did transfer help here? {STATUS_WORDS[rows[0]['status']].capitalize()}, at every size studied."
    parts = [f"{SHORT[s]} {_sizes(g)}" for s, g in groups.items()]
    return f"Did transfer help here? It depends on the amount of data: {'; '.join(parts)}."


def what_to_use(rec: dict, acc: list[dict]) -> str:
    if not rec.get("label"):
        return "What to use: nothing yet; no trial has finished."
    row = next((r for r in acc if r["label"] == rec["label"] and r["n_train"] == rec["n_train"]), None)
    score = ""
    if row:
        t = row["test_acc"]
        score = f", {100 * t['mean']:.1f}% on test" + (f" (95% CI {100 * t['lo']:.1f} to {100 * t['hi']:.1f})" if t["n"] > 1 else "")
    what = "scratch (no pretrained weights)" if rec.get("strategy") == "scratch" else rec["label"]
    at = "with all the data" if rec["n_train"] == "all" else f"at {rec['n_train']} per class"
    return f"What to use: {what}, chosen on validation {at}{score}."


def how_sure(rec: dict, gains: list[dict], decided: dict, conv: list[dict] = (), acc: list[dict] = ()) -> str:
    g = next((x for x in gains if x["label"] == rec.get("label") and x["n_train"] == rec.get("n_train")), None)
    share = f"{decided['decided']} of {decided['total']} comparisons with scratch are decided" if decided.get("total") else ""
    if g is None:
        what = "scratch, the control, leads on validation" if rec.get("strategy") == "scratch" else "it has no comparison with scratch"
        return f"How sure: {what}; {share}." if share else f"How sure: {what}."
    c = g["gain"]
    more = more_minutes(acc, [rec["label"], "scratch"], rec.get("n_train"), c.get("seeds_needed"))
    tail = f"; {seeds_phrase(c.get('seeds_needed'), more)}" if g["verdict"] == Verdict.INCONCLUSIVE else ""
    dropped = f", {c['dropped']} seed{'s' if c['dropped'] != 1 else ''} left out (a trial failed)" if c.get("dropped") else ""
    return (f"How sure: against scratch it is {g['verdict']}: {interval_phrase(c)}, {c.get('n', 0)} seeds{dropped}{tail}; "
            f"{share}." + caveat(list(conv), [rec["label"], "scratch"], rec.get("n_train")))


def answer(analysis: dict) -> list[str]:
    rec = analysis["recommendation"]
    conv = analysis.get("convergence", [])
    bad = sum(r["trials"] - r["converged"] for r in conv)
    first = helped(analysis["sweep"])
    if bad:
        first += f" ({bad} of {sum(r['trials'] for r in conv)} trials had not converged: see 'Did every arm converge?'.)"
    return [first, what_to_use(rec, analysis["accuracy"]),
            how_sure(rec, analysis["gains"], analysis["decided"], analysis.get("convergence", []), analysis["accuracy"])]
