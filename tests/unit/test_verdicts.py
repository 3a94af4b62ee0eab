"""The four verdicts, their error control, and every sentence built on them (synthetic records, no training)."""
from __future__ import annotations

import numpy as np
import pytest

from transferlab.analysis import analyze
from transferlab.analysis.sequential import open_configs, run_sequential, seed_rounds
from transferlab.analysis.stats import Design, compare, decide, holm
from transferlab.analysis.sweep import size_sweep

DESIGN = Design(looks=(3, 6, 10), margin=0.01)


def _verdict(diffs, design=Design(looks=(len([0] * 10),))):
    a = {s: 0.8 + d for s, d in enumerate(diffs)}
    b = {s: 0.8 for s in range(len(diffs))}
    return decide([compare(a, b, design)], design)[0]


def test_four_verdicts():
    assert _verdict([0.05, 0.06, 0.055, 0.05, 0.06])["verdict"] == "better"
    assert _verdict([-0.05, -0.06, -0.055, -0.05, -0.06])["verdict"] == "worse"
    assert _verdict([0.001, -0.002, 0.0, 0.001, -0.001, 0.002, 0.0, -0.001])["verdict"] == "equivalent"
    wide = _verdict([0.2, -0.15, 0.1, -0.2, 0.05])
    assert wide["verdict"] == "inconclusive" and wide["seeds_needed"] > 5
    assert _verdict([0.05, 0.06])["verdict"] == "inconclusive", "two seeds never decide"


def test_equivalence_needs_the_whole_interval_inside_the_margin():
    # A tight interval around +1.5 pp is not equivalent at a 1 pp margin, and at a 2 pp margin it is.
    diffs = [0.015, 0.016, 0.014, 0.015, 0.0155, 0.0145, 0.015, 0.016]
    wide = Design(looks=(8,), margin=0.02)
    assert _verdict(diffs, Design(looks=(8,), margin=0.01))["verdict"] == "better"
    v = _verdict([d - 0.015 + 0.003 for d in diffs], wide)
    assert v["verdict"] in ("equivalent", "better")
    assert _verdict([0.005, -0.004, 0.006, -0.005, 0.004, -0.006, 0.005, -0.004], wide)["verdict"] == "equivalent"


def test_holm_matches_the_textbook_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_alpha_spending_sums_to_alpha_and_saves_most_for_the_end():
    shares = DESIGN.shares()
    assert sum(shares) == pytest.approx(1.0)
    assert shares[0] < shares[1] < shares[2]
    assert seed_rounds(3, 10) == [3, 6, 10] and seed_rounds(5, 5) == [5]


# ---- a synthetic study: paired differences with known truth --------------------------------------------
def _synthetic_round(rng, deltas: dict[str, float], sd: float):
    """run_round for run_sequential: scratch's accuracy per seed, each strategy = scratch + delta + noise."""
    base: dict[int, float] = {}

    def run_round(seeds, only):
        recs = []
        for s in seeds:
            base.setdefault(s, 0.8 + rng.normal(0, 0.02))
            for lab, delta in {"scratch": 0.0, **deltas}.items():
                if only is not None and (lab, 5) not in only:
                    continue
                acc = base[s] + (0.0 if lab == "scratch" else delta + rng.normal(0, sd))
                recs.append(_record(lab, 5, s, acc, acc + rng.normal(0, sd / 2)))
        return recs

    return run_round


def _record(label, n, seed, test_acc, val_acc, params=1000):
    kw = dict(p.split("=") for p in label[:-1].split("(")[1].split(",")) if "(" in label else {}
    return {"trial_id": f"{label}-{n}-{seed}", "strategy": label.split("(")[0], "label": label,
            "params": {k: int(v) if v.isdigit() else v for k, v in kw.items()},
            "seed": seed, "n_train": n, "n_train_total": 5 * n, "status": "ok", "test_acc": test_acc,
            "best_val_acc": val_acc, "trainable_params": params, "wall_s": 1.0, "history": []}


def _simulate(deltas, sd, reps, seed=0):
    from transferlab.analysis.gain import gains

    rng = np.random.default_rng(seed)
    looks = seed_rounds(3, 10)
    outcomes, seeds_used = [], []
    for _ in range(reps):
        records, _ = run_sequential(looks, DESIGN, _synthetic_round(rng, deltas, sd))
        outcomes.append({g["label"]: g["verdict"] for g in gains(records, DESIGN)})
        seeds_used.append(len(records))
    return outcomes, seeds_used


def test_sequential_false_better_rate_stays_at_or_below_alpha_under_the_null():
    deltas = {"a": 0.0, "b": 0.0, "c": 0.0}
    outcomes, _ = _simulate(deltas, sd=0.02, reps=300)
    any_false = np.mean([any(v == "better" for v in o.values()) for o in outcomes])
    assert any_false <= DESIGN.alpha, f"family-wise false 'better' rate {any_false:.3f}"


def test_sequential_detects_a_real_two_point_difference_and_stops_early_when_clear():
    outcomes, used = _simulate({"real": 0.02, "null": 0.0}, sd=0.01, reps=150, seed=1)
    power = np.mean([o["real"] == "better" for o in outcomes])
    assert power >= 0.8, f"power {power:.2f}"
    big, used_big = _simulate({"huge": 0.2}, sd=0.01, reps=20, seed=2)
    assert all(o["huge"] == "better" for o in big)
    assert max(used_big) == 2 * 3, "a difference decided in the first round gets no more seeds"


def test_a_strategy_decided_worse_than_the_leader_leaves_the_race():
    recs = []
    for s in range(3):
        recs += [_record("scratch", 5, s, 0.80 + 0.001 * s, 0.80 + 0.001 * s),
                 _record("good", 5, s, 0.90 + 0.001 * s, 0.90 + 0.002 * s),
                 _record("bad", 5, s, 0.50 + 0.001 * s, 0.30 + 0.001 * s)]
    still = open_configs(recs, Design(looks=(3, 6, 10)))
    assert ("bad", 5) not in still


# ---- the sentences ------------------------------------------------------------------------------------
def _gain(n, verdict, mean=0.0, needed=None):
    return {"label": "finetune", "n_train": n, "verdict": verdict,
            "gain": {"mean": mean, "lo": mean - 0.01, "hi": mean + 0.01, "n": 3, "seeds_needed": needed}}


def _acc(n):
    return {"label": "scratch", "n_train": n, "n_train_total": 5 * (n if n != "all" else 100), "test_acc": {"mean": 0.8}}


SHAPES = {
    "small_only": (["better", "better", "equivalent", "worse"], "Scratch catches up at 50 per class."),
    "large_only": (["equivalent", "worse", "better", "better"], "Transfer starts to pay off only from 50 per class."),
    "never": (["worse", "equivalent", "equivalent", "worse"], "No transfer strategy is measurably better than scratch at any size"),
    "always": (["better"] * 4, "Transfer is measurably better than scratch at every size studied"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_sweep_text_for_each_shape(shape):
    verdicts, expected = SHAPES[shape]
    sizes = [5, 20, 50, "all"]
    sweep = size_sweep([_acc(n) for n in sizes], [_gain(n, v) for n, v in zip(sizes, verdicts)])
    assert expected in sweep["text"]
    if shape != "small_only":
        assert sweep["scratch_catches_up_at"] is None and "catches up" not in sweep["text"]


def test_sweep_never_claims_a_catch_up_the_data_does_not_decide():
    sizes = [5, 20, 50]
    sweep = size_sweep([_acc(n) for n in sizes], [_gain(5, "better"), _gain(20, "inconclusive", needed=14),
                                                   _gain(50, "equivalent")])
    assert sweep["scratch_catches_up_at"] is None
    assert "At 20 per class no strategy is decided better" in sweep["text"] and "about 14 seeds" in sweep["text"]
    assert "has caught up by 50 per class" in sweep["text"]
    # Scratch better at a small size and transfer better only at a large one: never "better at every size".
    sweep = size_sweep([_acc(n) for n in sizes], [_gain(5, "worse"), _gain(20, "worse"), _gain(50, "better")])
    assert "every size" not in sweep["text"] and "only from 50" in sweep["text"]


def _study_records(rng, labels=("scratch", "linear_probe", "finetune", "freeze_k(k=1)"), seeds=5):
    recs = []
    for n in (5, 20):
        for s in range(seeds):
            for i, lab in enumerate(labels):
                recs.append(_record(lab, n, s, rng.uniform(0.6, 0.95), 0.7 + 0.03 * i + rng.normal(0, 0.01),
                                    params=10 ** (i + 2)))
    return recs


def test_recommendation_is_chosen_on_validation_permuting_test_changes_nothing():
    rng = np.random.default_rng(0)
    study = {"design": Design(looks=(5,)).to_dict(), "data": {"class_names": list("abcde")}, "model": {"blocks": []}}
    records = _study_records(rng)
    first = analyze(records, study).recommendation
    for _ in range(5):
        tests = rng.permutation([r["test_acc"] for r in records])
        shuffled = [{**r, "test_acc": float(t)} for r, t in zip(records, tests)]
        again = analyze(shuffled, study).recommendation
        assert (again.label, again.leader, again.contenders) == (first.label, first.leader, first.contenders)


def test_recommendation_prefers_a_cheaper_strategy_only_when_decided_equivalent_on_validation():
    recs = []
    for s in range(8):
        recs += [_record("scratch", 5, s, 0.8, 0.80 + 0.001 * (s % 2), params=10**6),
                 _record("finetune", 5, s, 0.9, 0.900 + 0.001 * (s % 2), params=10**6),
                 _record("linear_probe", 5, s, 0.9, 0.899 + 0.001 * ((s + 1) % 2), params=10**3)]
    study = {"design": Design(looks=(8,)).to_dict(), "data": {"class_names": list("abcde")}, "model": {"blocks": []}}
    rec = analyze(recs, study).recommendation
    assert rec.leader == "finetune" and rec.label == "linear_probe"
    assert "decided equivalent" in rec.text and "measurably better than scratch" in rec.text


def test_a_strategy_stopped_early_cannot_lead_on_fewer_seeds():
    from transferlab.analysis.gain import race

    recs = [_record("scratch", 5, s, 0.8, 0.80 + 0.001 * s) for s in range(6)]
    recs += [_record("finetune", 5, s, 0.8, 0.85 + 0.001 * s) for s in range(6)]
    recs += [_record("head", 5, s, 0.8, 0.86) for s in range(3)]  # stopped after round 1, higher mean
    size = race(recs, Design(looks=(3, 6)))[0]
    assert size["leader"] == "finetune"
    assert {c["label"] for c in size["vs_leader"]} == {"scratch", "head"}


def test_seeds_that_agree_by_chance_on_a_small_split_are_not_certainty():
    # Three seeds with the same +0.7 pp difference: on a 135-example test split that is one example's step.
    same = {s: 0.8 + 1 / 135 for s in range(3)}
    base = {s: 0.8 for s in range(3)}
    exact = decide([compare(same, base, Design(looks=(3,)))], Design(looks=(3,)))[0]
    floored = decide([compare(same, base, Design(looks=(3,)), sd_floor=1 / 135)], Design(looks=(3,)))[0]
    assert exact["verdict"] != "inconclusive" and floored["verdict"] == "inconclusive"
