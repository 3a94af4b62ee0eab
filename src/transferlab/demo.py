"""The embedded demo: three source models, one target (digits 5-9, half B), so a user sees both answers.

``mlp`` and ``cnn`` are pretrained on digits 0-4; ``cnn10`` on all ten digits, its 5-9s from the other
half of those images.  The first two ask "do features of other digits help?", the third "does a model
that already knows these classes help?".
"""
from __future__ import annotations

import html
from pathlib import Path

from transferlab.config import StudyConfig
from dataclasses import replace

from transferlab.data.builtin import digits_source, digits_target
from transferlab.execution import StudyCallback, run_study
from transferlab.results import StudyResult
from transferlab.zoo import SOURCES, pretrained

DEMO_MODELS = ("mlp", "cnn", "cnn10")
DEMO_SIZES = [5, 20, "all"]  # "all" is about 45 per class; the sweep shows where scratch catches up
TITLES = {"mlp": "MLP pretrained on digits 0-4", "cnn": "CNN pretrained on digits 0-4",
          "cnn10": "CNN pretrained on all ten digits (other images of 5-9)"}


def demo(out: str | Path = "transferlab-demo", config: StudyConfig | None = None, models=DEMO_MODELS,
         callbacks: list[StudyCallback] | tuple = ()) -> list[StudyResult]:
    """Pretrain (or load) each demo model and study its transfer to digits 5-9 (half B)."""
    out = Path(out)
    data = digits_target(half="B")
    results = []
    for arch in models:
        backbone = pretrained(arch)
        source = digits_source(*SOURCES[arch])  # what this model was pretrained on: for the domain distance
        results.append(run_study(backbone, replace(data, source=source), config or StudyConfig(sizes=list(DEMO_SIZES)), out / arch, callbacks,
                                 meta={"title": f"demo: {TITLES[arch]}"}))
    write_index(out, results)
    return results


def write_index(out: Path, results: list[StudyResult]) -> Path:
    items = "".join(
        f"<li><a href='{html.escape(r.out_dir.name)}/report.html'>{html.escape(r.study.get('title', r.out_dir.name))}</a>"
        f"<p>{html.escape(r.analysis.recommendation.text)}</p></li>" for r in results)
    path = out / "index.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>transferlab demo</title></head>"
                    f"<body style='font-family:sans-serif;max-width:60em;margin:2em auto'><h1>transferlab demo</h1>"
                    f"<ul>{items}</ul></body></html>")
    return path
