"""The multi-source report (``OUT/report.html``): which pretrained model, or none. Built from the folder's JSON."""
from __future__ import annotations

import json
from pathlib import Path

from transferlab.report.html import environment
from transferlab.results import write_atomic


def render(info: list[dict], comparison, meta: dict) -> str:
    return environment().get_template("sources.html.j2").render(info=info, c=comparison, meta=meta)


def write_sources_report(out_dir: str | Path) -> Path:
    from transferlab.analysis.sources import load_sources

    out_dir = Path(out_dir)
    info, comparison = load_sources(out_dir)
    meta = json.loads((out_dir / "sources.json").read_text())
    path = out_dir / "report.html"
    write_atomic(path, render(info, comparison, meta))
    return path
