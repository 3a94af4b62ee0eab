"""Was every arm trained to convergence? Per strategy and size: trials converged, grids extended, and the head
against the linear probe on the same frozen features. Pure functions on the records; no torch."""
from __future__ import annotations

from collections import defaultdict

from transferlab.analysis.gain import SCRATCH, size_key, trained
from transferlab.results import TrialRecord

PROBE, HEAD = "linear_probe", "head"
OVERFIT_GAP = 0.1  # checkpoint training accuracy this far above validation accuracy: the head's capacity overfits


def convergence(records) -> list[dict]:
    """One row per (label, n_train): trials, converged, how the others ended, grids extended, choices at an edge."""
    groups: dict = defaultdict(list)
    for r in trained(records):
        groups[(r.label, r.n_train)].append(r)
    rows = []
    for (lab, n), recs in groups.items():
        stops: dict = defaultdict(int)
        for r in recs:
            if r.converged is not True:
                stops[r.stop or "unknown"] += 1
        rows.append({"label": lab, "n_train": n, "trials": len(recs),
                     "converged": sum(1 for r in recs if r.converged is True),
                     "not_converged": dict(stops),
                     "grid_extended": sum(1 for r in recs if r.grid_extended),
                     "at_edge": sum(1 for r in recs if r.chosen_at_edge),
                     "steps": int(sum(r.budget_steps or 0 for r in recs) / len(recs))})
    rows.sort(key=lambda r: (size_key(r["n_train"]), r["label"] != SCRATCH, r["label"]))
    return rows


def share(rows: list[dict]) -> float | None:
    total = sum(r["trials"] for r in rows)
    return sum(r["converged"] for r in rows) / total if total else None


def caveat(rows: list[dict], labels: list[str], n_train) -> str:
    """A clause for a verdict's sentence when the trials it rests on did not all converge, else ''."""
    parts = []
    for lab in labels:
        row = next((r for r in rows if r["label"] == lab and r["n_train"] == n_train), None)
        if row and row["converged"] < row["trials"]:
            parts.append(f"{row['trials'] - row['converged']} of {row['trials']} {lab} trials")
    if not parts:
        return ""
    return (f" This rests on trials that had not converged ({' and '.join(parts)} ended by the step limit or still "
            "falling in training loss), so a larger budget may change it.")


def _train_acc_at_checkpoint(r: TrialRecord) -> float | None:
    rows = [h for h in r.history or [] if h.get("step") == r.best_step]
    return rows[0]["train_acc"] if rows else None


def head_vs_probe(records, margin: float) -> list[str]:
    """Sentences for each size where a head on the frozen features scores below the logistic-regression probe on
    validation by more than ``margin``: overfitting (checkpoint training accuracy far above validation) or not."""
    by: dict = defaultdict(list)
    for r in trained(records):
        if r.strategy in (PROBE, HEAD) and r.params.get("kind", "logreg") == "logreg" and r.params.get("cut") is None:
            by[(r.label, r.n_train)].append(r)
    out = []
    for n in sorted({n for _, n in by}, key=size_key):
        probe = by.get((PROBE, n))
        if not probe:
            continue
        p_val = sum(r.val_score for r in probe) / len(probe)
        for (lab, m), recs in sorted(by.items(), key=lambda kv: kv[0][0]):
            if m != n or not lab.startswith(HEAD):
                continue
            h_val = sum(r.val_score for r in recs) / len(recs)
            if p_val - h_val <= margin:
                continue
            train = [t for t in (_train_acc_at_checkpoint(r) for r in recs) if t is not None]
            t_acc = sum(train) / len(train) if train else None
            why = (f"its training accuracy at the checkpoint is {100 * t_acc:.0f}% against {100 * h_val:.1f}% on "
                   "validation: its extra capacity overfits these few examples" if t_acc is not None and
                   t_acc - h_val >= OVERFIT_GAP else "it is not explained by overfitting: check its convergence row")
            out.append(f"At {n} per class, {lab} scores {100 * (p_val - h_val):.1f} pp below {PROBE} on validation "
                       f"({100 * h_val:.1f}% against {100 * p_val:.1f}%) on the same standardised frozen features; {why}.")
    return out


def sweep_caveat(rows: list[dict]) -> str:
    """A sentence for the size sweep naming the sizes whose verdicts rest on unconverged trials, else ''."""
    sizes = sorted({r["n_train"] for r in rows}, key=size_key)
    parts = []
    for n in sizes:
        at = [r for r in rows if r["n_train"] == n]
        bad = sum(r["trials"] - r["converged"] for r in at)
        if bad:
            parts.append(f"{bad} of {sum(r['trials'] for r in at)} " + ("with all the data" if n == "all" else f"at {n} per class"))
    if not parts:
        return ""
    return (f"Some trials had not converged ({'; '.join(parts)}; see 'Did every arm converge?'), so the verdicts at "
            "those sizes may change with a larger budget.")
