"""The three-line answer that opens the report and the terminal summary."""
from __future__ import annotations

from transferlab.analysis.answer import answer


def _iv(mean, lo, hi, n=5):
    return {"mean": mean, "lo": lo, "hi": hi, "sd": 0.01, "n": n, "seeds_needed": 12}


def test_the_answer_speaks_in_the_studys_verdicts():
    analysis = {
        "sweep": {"sizes": [{"n_train": 5, "n_train_total": 25, "status": "transfer helps"},
                            {"n_train": "all", "n_train_total": 200, "status": "undecided"}]},
        "recommendation": {"label": "head", "strategy": "head", "n_train": "all"},
        "accuracy": [{"label": "head", "n_train": "all", "test_acc": _iv(0.9, 0.88, 0.92)}],
        "gains": [{"label": "head", "n_train": "all", "verdict": "inconclusive", "gain": _iv(0.01, -0.01, 0.03)}],
        "decided": {"decided": 3, "total": 8},
    }
    did, use, sure = answer(analysis)
    assert did == ("Did transfer help here? It depends on the amount of data: yes at 5 per class; not decided yet with "
                   "all the data (200 examples).")
    assert use == "What to use: head, chosen on validation with all the data, 90.0% on test (95% CI 88.0 to 92.0)."
    assert sure.startswith("How sure: against scratch it is inconclusive: +1.0 pp (95% CI -1.0 to +3.0 pp), 5 seeds; about 12")
    assert sure.endswith("3 of 8 comparisons with scratch are decided.")
    analysis["recommendation"] = {"label": "scratch", "strategy": "scratch", "n_train": "all"}
    analysis["accuracy"].append({"label": "scratch", "n_train": "all", "test_acc": _iv(0.91, 0.9, 0.92)})
    _, use, sure = answer(analysis)
    assert use.startswith("What to use: scratch (no pretrained weights)") and "the control, leads on validation" in sure
