"""The embedded demo: two source models, one target (digits 5-9, half B), so a user sees both answers.

``mlp`` is pretrained on digits 0-4, ``cnn10`` on all ten digits, its 5-9s from the other half of those
images.  The first asks "do features of other digits help?", the second "does a model that already knows
these classes help?".  They run as one multi-source study, so the demo also answers "which pretrained
model, or none?".  (``demo:cnn``, the same CNN pretrained on digits 0-4, is in the zoo for ``run``.)
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from transferlab.config import StudyConfig, parse_strategy
from transferlab.data.builtin import digits_source, digits_target
from transferlab.execution import StudyCallback
from transferlab.multisource import Source, SourcesResult, run_sources
from transferlab.zoo import SOURCES, pretrained

DEMO_MODELS = ("mlp", "cnn10")
DEMO_SIZES = [5, "all"]  # "all" is about 45 per class: the two ends of the sweep, where scratch catches up
# The strategies of the users' questions, each trained to convergence under the standard budget: scratch or
# fine-tune; a linear probe or new layers on the frozen body; freeze which blocks (k = 1..3; k = 0 is
# fine-tuning at the pretrained LR, ``freeze_k(k=0)``, for the 10x question on your own model). The standard set
# adds an SVM, BatchNorm adaptation, LP-FT and gradual unfreezing; ``--strategies`` runs any of them. Kept to
# these (and to two sources) so that the demo takes about 5 minutes on 2 CPU cores with every arm converged.
DEMO_STRATEGIES = ("scratch", "linear_probe", "head", "freeze_k(k=1)", "freeze_k(k=2)", "freeze_k(k=3)", "finetune")
DEMO_MAX_SEEDS = 6  # 3 seeds, then 6 where a verdict is still open and 6 could decide it (10 measured: no more decided, 1.35x the time)
TITLES = {"mlp": "MLP pretrained on digits 0-4", "cnn": "CNN pretrained on digits 0-4",
          "cnn10": "CNN pretrained on all ten digits (other images of 5-9)"}


def demo_config() -> StudyConfig:
    """The demo's study: its sizes, strategies and seeds; worker processes, one per core (small models)."""
    return StudyConfig(sizes=list(DEMO_SIZES), strategies=[parse_strategy(s) for s in DEMO_STRATEGIES],
                       max_seeds=DEMO_MAX_SEEDS, workers="auto")


def demo(out: str | Path = "transferlab-demo", config: StudyConfig | None = None, models=DEMO_MODELS,
         callbacks: list[StudyCallback] | tuple = (), wait: bool = False) -> SourcesResult:
    """Pretrain (or load) each demo model and study its transfer to digits 5-9 (half B), then compare them."""
    data = digits_target(half="B")
    # Each source also brings the data it was pretrained on, for the domain distance.
    sources = [Source(arch, pretrained(arch), replace(data, source=digits_source(*SOURCES[arch])),
                      {"title": f"demo: {TITLES[arch]}"}) for arch in models]
    return run_sources(sources, config or demo_config(), out, callbacks,
                       meta={"title": "demo: which pretrained model for digits 5-9, or none?"}, wait=wait)
