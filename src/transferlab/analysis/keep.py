"""Which layers to keep, which to remove (seed 004): accuracy against cut for the per-cut strategies (a probe, a
head or a truncated network after block k; ``freeze_k`` for reference), and the smallest network decided
equivalent to the best.

The choice is made on validation, like every choice: the candidates are the race's leader and the configurations
the race decided within the margin of the best of the others (Hsu's comparison with the best, one family per size);
among them, the network with the fewest parameters. Only then are its test numbers quoted.
"""
from __future__ import annotations

import math

from transferlab.analysis.gain import SCRATCH, size_key
from transferlab.analysis.stats import Verdict, interval_phrase


def kept_blocks(row: dict, keep_axes: dict[str, str], n_blocks: int) -> int:
    """How many of the pretrained blocks a configuration's network keeps (the rest are removed)."""
    axis = keep_axes.get(row["strategy"])
    k = row["params"].get(axis) if axis else None
    return k if isinstance(k, int) and not isinstance(k, bool) else n_blocks


def keep_curves(acc_rows: list[dict], keep_axes: dict[str, str], depth_axes: dict[str, str]) -> list[dict]:
    """Per size, series and cut: test and validation accuracy, the kept network's parameters and inference time.
    ``freeze_k``'s rows come along (all blocks kept, the first k frozen), the reference the figure draws."""
    axes = {**{n: a for n, a in depth_axes.items() if n == "freeze_k"}, **keep_axes}
    from transferlab.analysis.sweep import depth_series

    out = []
    for r in acc_rows:
        axis = axes.get(r["strategy"])
        k = r["params"].get(axis) if axis else None
        if not isinstance(k, int) or isinstance(k, bool):
            continue
        out.append({"n_train": r["n_train"], "series": depth_series(r["label"], r["strategy"], axis), "k": k,
                    "removes": r["strategy"] in keep_axes, "label": r["label"],
                    "test_acc": r["test_acc"], "val_acc": r["val_acc"], "total_params": r.get("total_params", 0),
                    "infer_ms": r.get("infer_ms")})
    out.sort(key=lambda d: (size_key(d["n_train"]), d["series"], d["k"]))
    return out


def _blocks_phrase(k: int, names: list[str]) -> str:
    """'keeps blocks 1-2 (conv1, conv2) and removes 3 (conv3)'."""
    n = len(names)
    span = lambda a, b: f"{a}" if a == b else f"{a}-{b}"  # noqa: E731
    kept = f"block{'s' if k > 1 else ''} {span(1, k)} ({', '.join(names[:k])})"
    if k >= n:
        return f"keeps every block ({', '.join(names)})"
    return f"keeps {kept} and removes {span(k + 1, n)} ({', '.join(names[k:])})"


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def smallest_equivalent(acc_rows: list[dict], raced: list[dict], gain_rows: list[dict], keep_axes: dict[str, str],
                        block_names: list[str], margin: float) -> list[dict]:
    """Per size where the study removed blocks: the smallest network decided equivalent to the validation leader."""
    n_blocks = len(block_names)
    out = []
    for race in raced:
        n = race["n_train"]
        rows = {r["label"]: r for r in acc_rows if r["n_train"] == n}
        if not any(kept_blocks(r, keep_axes, n_blocks) < n_blocks for r in rows.values()):
            continue  # nothing was removed at this size: no question of a smaller network
        leader = rows[race["leader"]]
        vs = {c["label"]: c for c in race["vs_leader"]}
        equivalent = [rows[lab] for lab, c in vs.items() if c["verdict"] == Verdict.EQUIVALENT and lab in rows]
        pick = min([leader, *equivalent], key=lambda r: (r["total_params"], -r["best_val_acc"], r["label"]))
        smaller = [r for lab, r in rows.items() if r["total_params"] < leader["total_params"] and lab != SCRATCH]
        gain = next((g for g in gain_rows if g["label"] == pick["label"] and g["n_train"] == n), None)
        row = {"n_train": n, "leader": leader["label"], "leader_params": leader["total_params"],
               "leader_infer_ms": leader.get("infer_ms"), "leader_test_acc": leader["test_acc"]["mean"],
               "label": pick["label"] if pick is not leader else None,
               "kept": kept_blocks(pick, keep_axes, n_blocks), "params": pick["total_params"],
               "infer_ms": pick.get("infer_ms"), "test_acc": pick["test_acc"]["mean"],
               "vs_leader": vs.get(pick["label"]), "gain_verdict": gain["verdict"] if gain else None,
               "smaller_open": [r["label"] for r in sorted(smaller, key=lambda r: (r["total_params"], r["label"]))
                                if vs.get(r["label"], {}).get("verdict") == Verdict.INCONCLUSIVE]}
        row["text"] = _text(row, block_names, margin, leader, pick)
        out.append(row)
    return out


def _text(row: dict, names: list[str], margin: float, leader: dict, pick: dict) -> str:
    at = "with all training examples" if row["n_train"] == "all" else f"at {row['n_train']} per class"
    if row["label"] is None:
        text = (f"Smallest network as good as the best {at}: none smaller than the leader, {leader['label']} "
                f"({_count(leader['total_params'])} parameters), is decided equivalent to it on validation.")
        if row["smaller_open"]:
            more = len(row["smaller_open"]) - 4
            text += (f" Not yet decided (more seeds would tell): {', '.join(row['smaller_open'][:4])}"
                     + (f" and {more} more." if more > 0 else "."))
        return text
    share = row["params"] / row["leader_params"] if row["leader_params"] else math.nan
    ms = ""
    if row["infer_ms"] is not None and row["leader_infer_ms"] is not None:
        ms = f", {row['infer_ms']:.3g} ms per example against {row['leader_infer_ms']:.3g} ms"
    gain = {Verdict.BETTER: "measurably better than scratch", Verdict.WORSE: "measurably worse than scratch",
            Verdict.EQUIVALENT: "equivalent to scratch", Verdict.INCONCLUSIVE: "inconclusive against scratch"}
    return (f"Smallest network as good as the best {at}: {row['label']} {_blocks_phrase(row['kept'], names)}, with "
            f"{share:.0%} of the parameters ({_count(row['params'])} of {_count(row['leader_params'])}){ms}. On "
            f"validation it is decided within ±{100 * margin:.0f} pp of the best of the others (the leader is "
            f"{leader['label']}; comparison with the best {interval_phrase(row['vs_leader'])}). On test it scores {100 * row['test_acc']:.1f}% "
            f"against {100 * row['leader_test_acc']:.1f}%"
            + (f", and it is {gain[row['gain_verdict']]}." if row["gain_verdict"] else "."))


def keep(acc_rows: list[dict], raced: list[dict], gain_rows: list[dict], study: dict, margin: float) -> dict | None:
    keep_axes = study.get("keep_axes") or {}
    if not keep_axes:
        return None
    names = [b for b in (study.get("model") or {}).get("blocks", [])]
    curves = keep_curves(acc_rows, keep_axes, study.get("depth_axes") or {})
    smallest = smallest_equivalent(acc_rows, raced, gain_rows, keep_axes, names, margin) if names else []
    params = (study.get("model") or {}).get("block_params") or []
    body = [sum(params[:k]) for k in range(1, len(params) + 1)] if params else []
    return {"curves": curves, "smallest": smallest, "body_params": body, "blocks": names,
            "text": smallest[-1]["text"] if smallest else ""}
