"""report.html: one self-contained file (figures inlined), rendered from templates/report.html.j2.

It is built from the study folder's files alone (study.json, trials.jsonl, layers.json): the records
are analysed again into the typed ``Analysis`` and handed to the template. No torch.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import jinja2

from transferlab.analysis import Analysis, analyze
from transferlab.analysis.stats import seeds_hint
from transferlab.analysis.types import Comparison, Interval
from transferlab.report import plots
from transferlab.results import TrialStore, read_study, write_atomic

CAPTIONS = {
    "curves": ("Learning curves", "Validation accuracy per evaluation (x: optimizer steps) of the chosen learning rate, averaged over seeds; "
               "scratch dashed black."),
    "gains": ("Gain over scratch", "Paired by seed, 95% simultaneous CI (the interval each verdict is read from). Green: better; red: worse; blue: equivalent "
              "(inside the margin); gray: inconclusive (not decided at these seeds)."),
    "depth": ("Accuracy vs depth", "Which layers transfer: freezing the first k blocks and fine-tuning the rest "
              "(freeze_k), and, where the study ran it, tuning block k alone (surgical)."),
    "keep": ("Which layers to keep", "A probe, a head and a truncated network (frozen, or fine-tuned) reading the "
             "pooled output of block k, every later block removed; freeze_k (dashed, every block kept) for reference; "
             "scratch dotted. Bars: the parameters of blocks 1..k, what a network cut at k keeps."),
    "size": ("Accuracy vs target size", "How the answer changes with the amount of target data."),
    "splice": ("Splice curves: where features stop transferring",
               "AnB: the first n pretrained blocks frozen, the rest re-initialised and trained on the target; AnB+: "
               "the same, all fine-tuned; BnB/BnB+: the same from a network trained on the target itself. A dip of BnB "
               "below the baseline marks co-adapted layers split apart; AnB below BnB marks source-specific features."),
}


# ---- filters: numbers as the report writes them ---------------------------------------------
def pct(ci: Interval | None) -> str:
    if ci is None or not math.isfinite(ci.mean):
        return ""
    if not ci.has_ci:
        return f"{100 * ci.mean:.1f}"
    return f"{100 * ci.mean:.1f} [{100 * ci.lo:.1f}, {100 * ci.hi:.1f}]"


def pp(ci: Interval | None) -> str:
    if ci is None:
        return ""
    if not ci.has_ci:
        return f"{100 * ci.mean:+.1f}"
    return f"{100 * ci.mean:+.1f} [{100 * ci.lo:+.1f}, {100 * ci.hi:+.1f}]"


def level_hint(c: Comparison) -> str:
    """What the interval beside a verdict is: its own level, and the family it is simultaneous with."""
    if not c.level or not math.isfinite(c.lo):
        return ""
    return (f"interval at {100 * c.level:.3g}% each, so that the {c.family} intervals of its family cover together "
            f"at {100 * (c.coverage or 0.95):.0f}%; plain 95% CI [{100 * c.ci95[0]:+.1f}, {100 * c.ci95[1]:+.1f}]"
            if len(c.ci95) == 2 else "")


def plural(n, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def share(x: float | None) -> str:
    return f"{100 * x:.0f}%" if x is not None else "n/a"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("transferlab.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.ChainableUndefined,
                             trim_blocks=False, lstrip_blocks=False)
    env.filters.update(pct=pct, pp=pp, seeds_hint=seeds_hint, level_hint=level_hint, plural=plural, share=share)
    return env


def figures(study: dict, a: Analysis, layers: dict | None) -> dict:
    from transferlab.analysis.layers import splice_curves

    pngs = {"curves": plots.learning_curves(a) if a.curves else None, "gains": plots.gains(a),
            "depth": plots.accuracy_vs_depth(a), "keep": plots.keep_layers(a), "size": plots.accuracy_vs_size(a),
            "splice": plots.splice_curves(splice_curves(layers))}
    main = [{"key": k, "title": CAPTIONS[k][0], "caption": CAPTIONS[k][1], "png": png} for k, png in pngs.items()]
    return {"main": main, "profile": plots.profile_scores(study.get("profile"), a.depth)}


def render(study: dict, records: list[dict], layers: dict | None = None) -> str:
    a = analyze(records, study)
    config = study.get("config") or {}
    return environment().get_template("report.html.j2").render(
        study=study, a=a, data=study.get("data") or {}, model=study.get("model") or {}, config=config,
        budget=config.get("budget") or {}, aug=study.get("augmentation") or {}, profile=study.get("profile"),
        act=study.get("activations"), run=study.get("run") or {}, figures=figures(study, a, layers))


def write_report(out_dir: str | Path) -> Path:
    """Rebuild ``report.html`` in a study folder from its JSON files."""
    out_dir = Path(out_dir)
    study = read_study(out_dir)
    records = TrialStore(out_dir / "trials.jsonl").load()
    layers = json.loads((out_dir / "layers.json").read_text()) if (out_dir / "layers.json").exists() else None
    path = out_dir / "report.html"
    write_atomic(path, render(study, records, layers))
    return path
