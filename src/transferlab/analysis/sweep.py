"""How the answer changes with the amount of target data, and with freeze depth.

Every statement here is made from decided verdicts (better, worse, equivalent); a size whose
comparisons are still inconclusive is called undecided, never a tie.
"""
from __future__ import annotations

from transferlab.analysis.gain import SCRATCH, size_key
from transferlab.analysis.stats import Verdict, seeds_phrase

# What a size's comparisons against scratch add up to.
HELPS = "transfer helps"  # some transfer strategy is decided better than scratch
HURTS = "transfer hurts"  # every transfer strategy is decided worse
NO_GAIN = "no gain"  # none is better, all decided: scratch matches or beats each
UNDECIDED = "undecided"  # none is better yet, and some comparison is inconclusive


def size_status(gains_at_size: list[dict]) -> str | None:
    verdicts = [g["verdict"] for g in gains_at_size]
    if not verdicts:
        return None
    if Verdict.BETTER in verdicts:
        return HELPS
    if Verdict.INCONCLUSIVE in verdicts:
        return UNDECIDED
    return HURTS if set(verdicts) == {Verdict.WORSE} else NO_GAIN


def size_sweep(acc_rows: list[dict], gain_rows: list[dict], alpha: float = 0.05) -> dict:
    """Per target size: the status, scratch, the best decided gain; and where scratch catches up."""
    sizes = sorted({r["n_train"] for r in acc_rows}, key=size_key)
    per_size = []
    for n in sizes:
        rows = [r for r in acc_rows if r["n_train"] == n]
        scratch = next((r for r in rows if r["label"] == SCRATCH), None)
        g = [x for x in gain_rows if x["n_train"] == n]
        best_gain = max(g, key=lambda x: x["gain"]["mean"], default=None)
        open_ = [x for x in g if x["verdict"] == Verdict.INCONCLUSIVE]
        per_size.append({
            "n_train": n, "n_train_total": rows[0]["n_train_total"], "status": size_status(g),
            "better_than_scratch": [x["label"] for x in g if x["verdict"] == Verdict.BETTER],
            "equivalent_to_scratch": [x["label"] for x in g if x["verdict"] == Verdict.EQUIVALENT],
            "worse_than_scratch": [x["label"] for x in g if x["verdict"] == Verdict.WORSE],
            "inconclusive": [x["label"] for x in open_],
            "seeds_to_decide": min((x["gain"]["seeds_needed"] for x in open_ if x["gain"]["seeds_needed"] is not None),
                                   default=None),
            "stopped": [x["label"] for x in open_ if x["gain"].get("stopped")],
            "scratch_acc": scratch["test_acc"] if scratch else None,
            "best_transfer": best_gain["label"] if best_gain else None,
            "best_gain": best_gain["gain"] if best_gain else None,
            "best_verdict": best_gain["verdict"] if best_gain else None,
        })
    return {"sizes": per_size, "scratch_catches_up_at": catch_up(per_size), "text": sweep_text(per_size, alpha)}


def catch_up(per_size: list[dict], exact: bool = True) -> object:
    """The size from which scratch is decided to match or beat every transfer strategy, at that size and every
    larger one, after a size where transfer was decided better.  ``exact``: only if the size just before it is
    that size (no undecided size between).  None when the data does not show it."""
    statuses = [r["status"] for r in per_size]
    for i, row in enumerate(per_size):
        if i and HELPS in statuses[:i] and all(s in (NO_GAIN, HURTS) for s in statuses[i:]):
            return row["n_train"] if not exact or statuses[i - 1] == HELPS else None
    return None


def _sizes(rows: list[dict]) -> str:
    """'5 and 20 per class', '5 per class and all examples (223)', 'all examples (223)'."""
    counts = [str(r["n_train"]) for r in rows if r["n_train"] != "all"]
    names = [(", ".join(counts[:-1]) + " and " + counts[-1] if len(counts) > 1 else counts[0]) + " per class"] if counts else []
    names += [f"all examples ({r['n_train_total']})" for r in rows if r["n_train"] == "all"]
    return " and ".join(names)


def _together(k: int, alpha: float) -> str:
    """What a sentence over k sizes promises: each size is its own family, so by the union bound k times alpha."""
    return (f" (each size's verdicts hold at {100 * (1 - alpha):.0f}%; this sentence, reading {k} sizes, at "
            f"{100 * max(0.0, 1 - k * alpha):.0f}%)")


def sweep_text(per_size: list[dict], alpha: float = 0.05) -> str:
    """One or two sentences on the size sweep, from decided verdicts only."""
    if not per_size:
        return ""
    by = {s: [r for r in per_size if r["status"] == s] for s in (HELPS, NO_GAIN, HURTS, UNDECIDED)}
    parts = []
    if len(by[HELPS]) == len(per_size):
        parts.append(f"Transfer is measurably better than scratch at every size studied ({_sizes(per_size)})"
                     + (_together(len(per_size), alpha) if len(per_size) > 1 else "") + ".")
    elif by[HELPS]:
        parts.append(f"Transfer is measurably better than scratch at {_sizes(by[HELPS])}.")
    settled = by[NO_GAIN] + by[HURTS]
    if settled and len(settled) == len(per_size):
        parts.append("No transfer strategy is measurably better than scratch at any size: each is decided "
                     "equivalent or worse at every size" + (_together(len(per_size), alpha) if len(per_size) > 1 else "") + ".")
    else:
        if by[NO_GAIN]:
            parts.append(f"At {_sizes(by[NO_GAIN])} scratch matches or beats every transfer strategy "
                         "(each decided equivalent or worse).")
        if by[HURTS]:
            parts.append(f"At {_sizes(by[HURTS])} every transfer strategy is decided worse than scratch.")
    for r in by[UNDECIDED]:
        n_open, n_out = len(r["inconclusive"]), len(r.get("stopped", []))
        why = []
        if r.get("seeds_to_decide") is not None:
            why.append(f"the closest {seeds_phrase(r['seeds_to_decide'])}")
        if n_out:
            why.append(f"{n_out} stopped where the seed cap cannot decide {'them' if n_out != 1 else 'it'}")
        parts.append(f"At {_sizes([r])} no strategy is decided better, and {n_open} "
                     f"comparison{'s are' if n_open != 1 else ' is'} inconclusive ({'; '.join(why)}).")
    catch, by_then = catch_up(per_size), catch_up(per_size, exact=False)
    if catch is not None:
        parts.append(f"Scratch catches up at {catch} per class.")
    elif by_then is not None:
        parts.append(f"Scratch has caught up by {by_then} per class (where exactly is undecided).")
    elif by[HELPS] and (by[NO_GAIN] or by[HURTS]):
        first_help = min(per_size.index(r) for r in by[HELPS])
        if all(r["status"] in (NO_GAIN, HURTS) for r in per_size[:first_help]):
            parts.append(f"Transfer starts to pay off only from {per_size[first_help]['n_train']} per class.")
    return " ".join(parts)


def depth_series(label: str, name: str, axis: str) -> str:
    """The label without its depth parameter: ``freeze_k(k=2, train_bn=True)`` -> ``freeze_k(train_bn=True)``."""
    inner = label[len(name) + 1:-1] if label.startswith(name + "(") else ""
    rest = [x for x in inner.split(", ") if x and not x.startswith(f"{axis}=")]
    return f"{name}({', '.join(rest)})" if rest else name


def depth_profile(acc_rows: list[dict], axes: dict[str, str]) -> list[dict]:
    """Accuracy against depth, per target size and series (for the figure; choices use validation).

    ``axes``: strategy name -> its parameter that is a depth, from the study (``freeze_k`` -> ``k``, ``surgical``
    -> ``block``). Each strategy configuration apart from that parameter is one series."""
    out = []
    for r in acc_rows:
        axis = axes.get(r["strategy"])
        if axis and r["params"].get(axis) is not None:  # a probe or head at the last cut (None) has no depth
            out.append({"n_train": r["n_train"], "k": r["params"][axis], "test_acc": r["test_acc"], "val_acc": r["val_acc"],
                        "series": depth_series(r["label"], r["strategy"], axis)})
    out.sort(key=lambda r: (size_key(r["n_train"]), r["series"], r["k"]))
    return out


def main_series(depth_rows: list[dict]) -> list[dict]:
    """The depth series with the most depths at the largest size (freeze_k's, in the default study)."""
    if not depth_rows:
        return []
    size = max({d["n_train"] for d in depth_rows}, key=size_key)
    counts: dict[str, int] = {}
    for d in depth_rows:
        if d["n_train"] == size:
            counts[d["series"]] = counts.get(d["series"], 0) + 1
    series = min(counts, key=lambda s: (-counts[s], s))
    return [d for d in depth_rows if d["series"] == series]
