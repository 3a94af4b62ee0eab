"""Which pretrained model, or none: the sources of a multi-source study compared. Pure functions, no torch.

Each source ran the same strategies on the same splits, sizes and seeds (its own study folder). At each
target size a source is represented by its best transfer configuration, chosen on validation within that
source; the scratch control of each distinct architecture is a contestant of its own ("none"). Contestants
are ranked on validation (that ranking chooses), then every one is compared with the validation leader by
the paired difference over shared seeds, on validation (simultaneous intervals across the family: this decides
equivalence) and on test (reported, never used to choose).  The leader is ``leader.leader``: an additive model of
contestant and seed effects, so a source that stopped early at fewer seeds is neither favoured nor barred. The transferability scores each rank the sources before
training; Kendall's tau says how well each ranking matched the measured one.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from transferlab.analysis.gain import SCRATCH, accuracy_rows, by_config, clip01, gains, size_key
from transferlab.analysis.leader import leader, paired_scores
from transferlab.analysis.stats import MAX_SEEDS_ESTIMATE, Design, Verdict, compare, decide, interval_phrase
from transferlab.analysis.types import Comparison, Interval, Plain, Size
from transferlab.errors import UserError
from transferlab.results import SCHEMA_VERSION, TrialStore, as_records, check_schema, read_study

SCORES = ("logme", "hscore", "knn_acc", "probe_acc")  # read at the last cut: the features a head reads
HEAD_SCORES = ("leep", "nce")  # of the source classifier, where every source kept one


def _score(profile: dict, score: str) -> float | None:
    cuts = profile.get("cuts") or []
    value = profile.get(score) if score in HEAD_SCORES else (cuts[-1].get(score) if cuts else None)
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class Contestant(Plain):
    """One source's best configuration at one size (or a scratch control), with its comparisons."""

    name: str  # the source, or "none: scratch" (with its architecture when there are several)
    source: str  # the source whose study ran it
    label: str
    is_scratch: bool
    val_acc: Interval = field(default_factory=Interval)
    test_acc: Interval = field(default_factory=Interval)
    seeds: list[int] = field(default_factory=list)
    trainable_params: int = 0
    model_params: int = 0
    gain_verdict: Optional[str] = None  # against its own architecture's scratch, on test (the source's study)
    gain: Optional[Comparison] = None
    vs_leader_val: Optional[Comparison] = None
    vs_leader_test: Optional[Comparison] = None


@dataclass
class Ranking(Plain):
    n_train: Size
    leader: str
    contestants: list[Contestant] = field(default_factory=list)  # validation order, best first


@dataclass
class ScoreAgreement(Plain):
    score: str
    by_source: dict[str, float] = field(default_factory=dict)
    kendall_tau: Optional[float] = None
    p_value: Optional[float] = None
    ranks_first: str = ""
    agrees_on_first: Optional[bool] = None


@dataclass
class SourceComparison(Plain):
    sources: list[dict] = field(default_factory=list)  # name, folder, spec, scratch_group, model_params
    rankings: list[Ranking] = field(default_factory=list)
    table: list[dict] = field(default_factory=list)  # label -> {source: test accuracy} at the largest size
    scores: list[ScoreAgreement] = field(default_factory=list)
    measured_order: list[str] = field(default_factory=list)
    recommendation: dict = field(default_factory=dict)
    schema: int = SCHEMA_VERSION


def _best_transfer(acc: list[dict], per: dict, n) -> dict | None:
    """The transfer configuration a source's own study would choose at size ``n``: the ``leader`` on validation,
    paired over shared seeds (as the race picks its leader)."""
    rows = {r["label"]: r for r in acc if r["n_train"] == n and r["strategy"] != SCRATCH}
    if not rows:
        return None
    return rows[leader({lab: {s: r.val_score for s, r in per[(lab, n)].items()} for lab in rows})]


def _contestants(sources: list[dict], n, design: Design) -> list[tuple[Contestant, dict, dict]]:
    """(contestant, {seed: val acc}, {seed: test acc}) for each source's best and each distinct scratch."""
    out, scratch_seen = [], set()
    groups = {s["scratch_group"] for s in sources}
    for s in sources:
        acc, per = accuracy_rows(s["records"]), by_config(s["records"])
        picks = [(_best_transfer(acc, per, n), False)]
        if s["scratch_group"] not in scratch_seen:
            scratch_seen.add(s["scratch_group"])
            picks.append((next((r for r in acc if r["n_train"] == n and r["strategy"] == SCRATCH), None), True))
        gain_rows = {(g["label"], g["n_train"]): g for g in gains(s["records"], design)}
        for row, is_scratch in picks:
            if row is None:
                continue
            seeds = per[(row["label"], n)]
            same = [o["name"] for o in sources if o["scratch_group"] == s["scratch_group"]]
            name = ("none: scratch" + (f" (for {', '.join(same)})" if len(groups) > 1 else "")) if is_scratch else s["name"]
            g = gain_rows.get((row["label"], n))
            c = Contestant(name, s["name"], row["label"], is_scratch, Interval.from_dict(row["val_acc"]),
                           Interval.from_dict(row["test_acc"]), row["seeds"], row["trainable_params"], s["model_params"],
                           g["verdict"] if g else None, Comparison.from_dict({**g["gain"], "verdict": g["verdict"]}) if g else None)
            out.append((c, {k: r.val_score for k, r in seeds.items()}, {k: r.test_acc for k, r in seeds.items()}))
    return out


def _chosen_among(sources: list[dict], n) -> int:
    """The configurations a ranking at size ``n`` chose among: every transfer configuration of every source, and each
    distinct scratch control."""
    transfer = sum(len({r.label for r in as_records(s["records"]) if r.n_train == n and r.trained and r.strategy != SCRATCH})
                   for s in sources)
    return transfer + len({s["scratch_group"] for s in sources})


def rank_at(sources: list[dict], n, design: Design) -> Ranking | None:
    items = _contestants(sources, n, design)
    if not items:
        return None
    scores = paired_scores({i: v for i, (_, v, _) in enumerate(items)})
    first = leader({i: v for i, (_, v, _) in enumerate(items)}, tie=lambda i: items[i][0].is_scratch)
    # The leader first, then the others by their paired score (the same numbers that chose the leader).
    order = [items[first]] + [items[i] for i in sorted(scores, key=lambda i: -scores[i]) if i != first]
    (leader_c, lv, lt), rest = order[0], order[1:]
    if rest:
        # Each source's contestant is its best of K configurations, chosen on the same validation numbers: the
        # family counts every (source, configuration) chosen among, not only the contestants, so a source expanded
        # into more configurations does not win more often.
        chosen_among = _chosen_among(sources, n)
        pairs = chosen_among * (chosen_among - 1) // 2
        val = decide([compare(v, lv, design, design.val_resolution) for _, v, _ in rest], design, pairs)
        test = decide([compare(t, lt, design, design.test_resolution, design.test_examples) for _, _, t in rest],
                      design, pairs)
        for (c, _, _), dv, dt in zip(rest, val, test):
            c.vs_leader_val = Comparison.from_dict({**dv, "label": leader_c.name})
            c.vs_leader_test = Comparison.from_dict({**dt, "label": leader_c.name})
    return Ranking(n, leader_c.name, [c for c, _, _ in order])


def score_agreement(sources: list[dict], measured: dict[str, float]) -> list[ScoreAgreement]:
    """Kendall's tau between each score's ranking of the sources (before training) and the measured one."""
    from scipy.stats import kendalltau

    names = [s["name"] for s in sources if s["name"] in measured]
    out = []
    for score in (*SCORES, *HEAD_SCORES):
        values = {}
        for s in sources:
            value = _score(s["study"].get("profile") or {}, score)
            if s["name"] in measured and value is not None:
                values[s["name"]] = value
        if len(values) != len(names) or len(names) < 2:
            continue
        xs, ys = [values[n] for n in names], [measured[n] for n in names]
        tau, p = kendalltau(xs, ys)
        first = max(names, key=lambda n: values[n])
        out.append(ScoreAgreement(score, values, None if math.isnan(tau) else float(tau),
                                  None if math.isnan(p) else float(p), first, first == max(names, key=lambda n: measured[n])))
    return out


def source_table(sources: list[dict], n) -> list[dict]:
    """Source x strategy: each configuration's mean test accuracy (95% CI) per source at size ``n``."""
    rows: dict[str, dict] = {}
    for s in sources:
        for r in accuracy_rows(s["records"]):
            if r["n_train"] == n:
                rows.setdefault(r["label"], {"label": r["label"], "cells": {}})["cells"][s["name"]] = clip01(r["test_acc"])
    return sorted(rows.values(), key=lambda r: (r["label"] != SCRATCH, -max(c["mean"] for c in r["cells"].values())))


def compare_sources(sources: list[dict], design: Design) -> SourceComparison:
    """``sources``: per source its ``name``, ``study`` (study.json), ``records``, ``scratch_group``, ``arch``,
    ``model_params`` and ``folder``."""
    sources = [{**s, "records": as_records(s["records"])} for s in sources]
    sizes = sorted({r.n_train for s in sources for r in s["records"] if r.status == "ok" and r.n_train},
                   key=size_key)
    rankings = [r for r in (rank_at(sources, n, design) for n in sizes) if r is not None]
    result = SourceComparison([{k: s[k] for k in ("name", "folder", "spec", "scratch_group", "arch", "model_params")}
                               for s in sources], rankings)
    if not rankings:
        result.recommendation = {"text": "No trial has finished yet, so there is nothing to compare."}
        return result
    last = rankings[-1]
    result.table = source_table(sources, last.n_train)
    measured = {c.name: c.test_acc.mean for c in last.contestants if not c.is_scratch}
    result.measured_order = sorted(measured, key=measured.get, reverse=True)
    result.scores = score_agreement(sources, measured)
    result.recommendation = recommend_source(last, design, _chosen_among(sources, last.n_train))
    return result


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _diff(c: Comparison) -> str:
    return interval_phrase(c.to_dict())


def _who(c: Contestant) -> str:
    return c.name if c.is_scratch else f"{c.name} ({c.label})"


def recommend_source(r: Ranking, design: Design, family: int | None = None) -> dict:
    """Chosen on validation: the leader, or a smaller model decided equivalent to it. Test numbers are quoted.

    At most three sentences, what was decided first: the choice, the other contestants decided against the leader
    on test, and the choice's gain over its own scratch. The undecided ones and what would decide them are the
    ranking table's rows, not prose. ``family``: the configurations the ranking chose among."""
    leader = r.contestants[0]
    equivalent = [c for c in r.contestants[1:] if c.vs_leader_val and c.vs_leader_val.verdict == Verdict.EQUIVALENT
                  and c.model_params < leader.model_params]  # only a smaller model displaces the leader
    choice = min([leader, *equivalent], key=lambda c: (c.model_params, -c.val_acc.mean))
    what = "train from scratch (no pretrained model)" if choice.is_scratch else f"start from {choice.name} with {choice.label}"
    at = "with all the training examples" if r.n_train == "all" else f"at {r.n_train} examples per class"
    why = (f"it leads on validation ({_pct(choice.val_acc.mean)})" if choice is leader else
           f"it is the smaller model ({choice.model_params:,} against {leader.model_params:,} parameters), decided "
           f"equivalent on validation within ±{100 * design.margin:.0f} pp to the leader, {_who(leader)} "
           f"({_pct(leader.val_acc.mean)}; on test {choice.vs_leader_test.verdict} at {_diff(choice.vs_leader_test)})")
    parts = [f"Use {'none' if choice.is_scratch else choice.name}: {what}; {at} {why}, and scores "
             f"{_pct(choice.test_acc.mean)} on test over {len(choice.seeds)} seeds."]
    others = [c for c in r.contestants[1:] if c is not choice and c.vs_leader_test is not None]
    decided = [f"{_who(c)} is {c.vs_leader_test.verdict} at {_diff(c.vs_leader_test)}" for c in others
               if c.vs_leader_test.verdict != Verdict.INCONCLUSIVE]
    open_ = [c for c in others if c.vs_leader_test.verdict == Verdict.INCONCLUSIVE]
    hopeless = all((c.vs_leader_test.seeds_needed or 0) > MAX_SEEDS_ESTIMATE for c in open_)
    among = f" (their family: every pair of the {family} configurations it chose among)" if family else ""
    why_open = (f"each would need more than {MAX_SEEDS_ESTIMATE} seeds, or a larger test split{among}" if hopeless
                else "the ranking table gives the seeds that would decide each")
    if others:
        tail = f"; {len(open_)} {'is' if len(open_) == 1 else 'are'} not decided: {why_open}" if open_ else ""
        parts.append((f"Against {leader.name} on test, " + "; ".join(decided) + tail + ".") if decided else
                     f"No other contestant is decided against {leader.name} on test: {why_open}.")
    if not choice.is_scratch and choice.gain is not None:
        own = next((c for c in others if c.is_scratch and c.source == choice.source), None)
        apart = (" (in this comparison of sources, with its larger family, not decided)"
                 if choice is leader and own is not None and own.vs_leader_test.verdict == Verdict.INCONCLUSIVE
                 and choice.gain_verdict != Verdict.INCONCLUSIVE else "")
        parts.append(f"Against its own architecture trained from scratch, {choice.name} with {choice.label} gains "
                     f"{_diff(choice.gain)} on test: {choice.gain_verdict} in its study{apart}, simultaneous across "
                     "its comparisons with scratch at that size.")
    return {"source": None if choice.is_scratch else choice.name, "label": choice.label, "n_train": r.n_train,
            "leader": leader.name, "equivalent_to_leader": [c.name for c in equivalent], "text": " ".join(parts)}


# ---- from a multi-source study's folder (no torch) ----------------------------------------------------------
def compare_studies(info: list[dict], studies: list[dict], records: list[list[dict]]) -> SourceComparison:
    """``compare_sources`` on per-source study descriptions and records (the verdicts' design is the first's)."""
    from transferlab.analysis import canonical
    from transferlab.results import as_records

    # Records in one order, as ``analyze`` reads them: ties and tables must not depend on the order trials finished.
    items = [{**i, "study": st, "records": canonical(as_records(rec), st)} for i, st, rec in zip(info, studies, records)]
    return compare_sources(items, Design.from_dict(studies[0].get("design")))


def read_sources(out_dir: Path) -> dict:
    """``sources.json`` of a multi-source study folder, schema checked."""
    path = Path(out_dir) / "sources.json"
    if not path.exists():
        raise UserError(f"{out_dir} is not a multi-source study folder (no sources.json)",
                        "point to the --out folder of a study run with several --model")
    try:
        return check_schema(json.loads(path.read_text()), str(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})", "rerun the study to rewrite it") from None


def load_sources(out_dir) -> tuple[list[dict], SourceComparison]:
    """The sources of a multi-source folder and their comparison, analysed again from its files."""
    out_dir = Path(out_dir)
    info = read_sources(out_dir)["sources"]
    studies = [read_study(out_dir / i["folder"]) for i in info]
    records = [TrialStore(out_dir / i["folder"] / "trials.jsonl").load() for i in info]
    return info, compare_studies(info, studies, records)
