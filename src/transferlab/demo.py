"""The embedded demo: digits 0-4 pretrain two models, digits 5-9 is the target."""
from __future__ import annotations

import html
from pathlib import Path

from transferlab.config import StudyConfig
from transferlab.data.builtin import digits_target
from transferlab.execution import StudyCallback, run_study
from transferlab.results import StudyResult
from transferlab.zoo import pretrained

DEMO_MODELS = ("mlp", "cnn")
DEMO_SIZES = [5, 20, "all"]  # "all" is about 89 per class; the sweep shows where scratch catches up


def demo(out: str | Path = "transferlab-demo", config: StudyConfig | None = None, models=DEMO_MODELS,
         callbacks: list[StudyCallback] | tuple = ()) -> list[StudyResult]:
    """Pretrain (or load) each demo model on digits 0-4 and study its transfer to digits 5-9."""
    out = Path(out)
    data = digits_target()
    results = []
    for arch in models:
        backbone = pretrained(arch)
        results.append(run_study(backbone, data, config or StudyConfig(sizes=list(DEMO_SIZES)), out / arch, callbacks,
                                 meta={"title": f"demo: {arch} pretrained on digits 0-4"}))
    write_index(out, results)
    return results


def write_index(out: Path, results: list[StudyResult]) -> Path:
    items = "".join(
        f"<li><a href='{html.escape(r.out_dir.name)}/report.html'>{html.escape(r.study.get('title', r.out_dir.name))}</a>"
        f"<p>{html.escape(r.analysis['recommendation']['text'])}</p></li>" for r in results)
    path = out / "index.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>transferlab demo</title></head>"
                    f"<body style='font-family:sans-serif;max-width:60em;margin:2em auto'><h1>transferlab demo</h1>"
                    f"<ul>{items}</ul></body></html>")
    return path
