"""The embedded demo: three source models, one target (digits 5-9, half B), so a user sees both answers.

``mlp`` and ``cnn`` are pretrained on digits 0-4; ``cnn10`` on all ten digits, its 5-9s from the other
half of those images.  The first two ask "do features of other digits help?", the third "does a model
that already knows these classes help?".  They run as one multi-source study, so the demo also answers
"which pretrained model, or none?".
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from transferlab.config import StudyConfig
from transferlab.data.builtin import digits_source, digits_target
from transferlab.execution import StudyCallback
from transferlab.multisource import Source, SourcesResult, run_sources
from transferlab.zoo import SOURCES, pretrained

DEMO_MODELS = ("mlp", "cnn", "cnn10")
DEMO_SIZES = [5, 20, "all"]  # "all" is about 45 per class; the sweep shows where scratch catches up
TITLES = {"mlp": "MLP pretrained on digits 0-4", "cnn": "CNN pretrained on digits 0-4",
          "cnn10": "CNN pretrained on all ten digits (other images of 5-9)"}


def demo(out: str | Path = "transferlab-demo", config: StudyConfig | None = None, models=DEMO_MODELS,
         callbacks: list[StudyCallback] | tuple = (), wait: bool = False) -> SourcesResult:
    """Pretrain (or load) each demo model and study its transfer to digits 5-9 (half B), then compare them."""
    data = digits_target(half="B")
    # Each source also brings the data it was pretrained on, for the domain distance.
    sources = [Source(arch, pretrained(arch), replace(data, source=digits_source(*SOURCES[arch])),
                      {"title": f"demo: {TITLES[arch]}"}) for arch in models]
    return run_sources(sources, config or StudyConfig(sizes=list(DEMO_SIZES)), out, callbacks,
                       meta={"title": "demo: which pretrained model for digits 5-9, or none?"}, wait=wait)
