"""How the answer changes with the amount of target data, and with freeze depth."""
from __future__ import annotations

from transferlab.analysis.gain import SCRATCH, size_key


def size_sweep(acc_rows: list[dict], gain_rows: list[dict]) -> dict:
    """Per target size: the winner, scratch, the best transfer gain; and where scratch catches up."""
    sizes = sorted({r["n_train"] for r in acc_rows}, key=size_key)
    per_size = []
    for n in sizes:
        rows = [r for r in acc_rows if r["n_train"] == n]
        scratch = next((r for r in rows if r["label"] == SCRATCH), None)
        g = [x for x in gain_rows if x["n_train"] == n]
        best_gain = max(g, key=lambda x: x["gain"]["mean"], default=None)
        winner = max(rows, key=lambda r: r["test_acc"]["mean"])
        verdicts = {x["verdict"] for x in g}
        per_size.append({
            "better_than_scratch": [x["label"] for x in g if x["verdict"] == "better"],
            "verdict": "better" if "better" in verdicts else "tie" if "tie" in verdicts else
                       "worse" if "worse" in verdicts else "inconclusive" if verdicts else None,
            "n_train": n, "n_train_total": winner["n_train_total"], "winner": winner["label"],
            "winner_acc": winner["test_acc"], "scratch_acc": scratch["test_acc"] if scratch else None,
            "best_transfer": best_gain["label"] if best_gain else None,
            "best_gain": best_gain["gain"] if best_gain else None,
            "best_verdict": best_gain["verdict"] if best_gain else None,
        })
    # Scratch has caught up at the first size from which no transfer strategy is measurably better.
    catch_up = None
    for i, row in enumerate(per_size):
        if all(r["verdict"] in ("tie", "worse") for r in per_size[i:]):  # "inconclusive" (one seed) never counts
            catch_up = row["n_train"]
            break
    return {"sizes": per_size, "scratch_catches_up_at": catch_up}


def depth_profile(acc_rows: list[dict]) -> list[dict]:
    """Test accuracy of freeze_k against k, per target size."""
    out = []
    for r in acc_rows:
        if r["strategy"] == "freeze_k":
            out.append({"n_train": r["n_train"], "k": r["params"]["k"], "test_acc": r["test_acc"]})
    out.sort(key=lambda r: (size_key(r["n_train"]), r["k"]))
    return out
