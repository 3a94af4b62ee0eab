"""Studies whose answer is known in advance: the verdicts must find it, and never the opposite."""
from __future__ import annotations

import torch

import transferlab as tl
from transferlab.data.builtin import digits_source, digits_target
from transferlab.training import Budget

STRATEGIES = [{"name": "scratch"}, {"name": "linear_probe"}, {"name": "finetune"}, {"name": "freeze_k", "params": {"k": 2}}]


def _config(**kw):
    return tl.StudyConfig(sizes=[5], strategies=STRATEGIES, budget=Budget(epochs=10, patience=4), max_seeds=6, **kw)


def _random_label_source():
    """The demo CNN pretrained on digits 0-4 whose labels were shuffled: features of nothing."""
    from transferlab import zoo
    from transferlab.data.base import Split
    from transferlab.fitloop import fit
    from transferlab.training import param_groups

    bb = zoo.build("cnn")
    src = digits_source()
    g = torch.Generator().manual_seed(0)
    shuffled = Split(bb.preprocessing.apply(src.inputs), src.y[torch.randperm(len(src), generator=g)])
    fit(bb, param_groups(list(bb.blocks.values()), bb.head, 3e-3), shuffled, shuffled.subset(torch.arange(100)),
        Budget(epochs=15, patience=15, batch_size=64), g)
    return bb


def test_a_source_pretrained_on_random_labels_is_never_recommended_over_scratch():
    result = tl.run_study(_random_label_source(), digits_target(half="B"), _config())
    rec = result.analysis.recommendation
    better = [g.label for g in result.analysis.gains if g.verdict == "better"]
    assert not better, f"random-label features called better than scratch: {better}"
    assert "measurably better than scratch" not in rec.text, rec.text


def test_a_source_that_knows_the_target_classes_is_recommended_with_a_decided_gain(tmp_path):
    from transferlab import zoo

    result = tl.run_study(zoo.pretrained("cnn10"), digits_target(half="B"), _config(), out=tmp_path)
    rec = result.analysis.recommendation
    assert rec.strategy != "scratch" and rec.gain_verdict == "better", rec.text
    assert "measurably better than scratch" in rec.text
    study = result.study
    assert study["model"]["init"].startswith("by its constructor"), "scratch must use the architecture's own init"
    assert study["augmentation"]["kinds"] == [], "digits get no augmentation by default"
    assert study["rounds"][0]["seeds"] == [0, 1, 2]
