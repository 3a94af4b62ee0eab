"""Which layers transfer: splice curves, diagnostics, activation inspection, all in the study's report."""
from __future__ import annotations

import pytest

import json

import torch

import transferlab as tl
from tests.conftest import cli, prepared
from transferlab.measurements.batchnorm import bn_check
from transferlab.measurements.inputs import input_check


@pytest.mark.slow  # a long end-to-end run: in the slow suite, which CI runs too
def test_layers_command_writes_splice_curves_into_the_report(tmp_path):
    out = tmp_path / "study"
    res = cli("run", "--model", "demo:cnn", "--data", "demo:digits", "--seeds", "2", "--sizes", "20", "--epochs", "3",
              "--strategies", "scratch,finetune,freeze_k", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    res = cli("layers", "--model", "demo:cnn", "--data", "demo:digits", "--seeds", "2", "--sizes", "20", "--epochs", "3",
              "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    layers = json.loads((out / "layers.json").read_text())
    curves = {(r["curve"], r["n"]) for r in layers["records"]}
    assert {("AnB", 1), ("AnB+", 2), ("BnB", 1), ("BnB+", 2), ("base B", 3)} <= curves
    html = (out / "report.html").read_text()
    for section in ("Splice curves", "Which layers transfer", "What fine-tuning moved", "Why does it learn slower",
                    "responds to"):
        assert section in html, section
    study = json.loads((out / "study.json").read_text())
    assert study["profile"]["a_distance"] is not None and study["profile"]["leep"] is not None
    analysis = json.loads((out / "analysis.json").read_text())
    assert set(analysis["profile_validation"]["kendall_tau"]) == {"logme", "hscore", "knn_acc", "probe_acc"}
    moved = {m["label"]: m["blocks"] for m in analysis["moved"]}
    assert all(0.0 <= b["cka"] <= 1.0 + 1e-9 and b["weight_change"] > 0 for b in moved["finetune"]), moved["finetune"]
    assert "freeze_k(k=3)" not in moved, "a frozen body did not move"


def test_diagnostics_flag_bad_normalisation_and_bn_shift(cnn, digits):
    data = prepared(cnn, digits)
    assert not input_check(cnn, data)["flag"]
    assert not any(b["flag"] for b in bn_check(cnn, data))
    shifted = prepared(cnn, digits)
    shifted.train.inputs = shifted.train.inputs * 40 + 25  # as if 0-255 pixels skipped normalisation
    assert input_check(cnn, shifted)["flag"]
    assert any(b["flag"] for b in bn_check(cnn, shifted))


def test_gradient_probe_and_slow_head_flag(mlp, digits):
    cfg = tl.StudyConfig(seeds=[0], sizes=[5], budget=tl.Budget(epochs=3, lrs=(1e-3,)),
                         strategies=[{"name": "scratch"}, {"name": "head"}])
    res = tl.run_study(mlp, digits, cfg)
    first = res.analysis.first_epochs.strategies
    assert set(first["scratch"]) == {"fc1", "fc2", "fc3", "head"}
    assert first["head"]["fc1"]["update_ratio"] == 0.0 and first["head"]["head"]["update_ratio"] > 0
    assert "head:" not in " ".join(res.analysis.slow_start_flags)
    # Shrink the frozen features 1000x. Raw, they would leave Adam's head update barely moving the logits (the slow
    # start this flag was made for); the head reads them standardised, so its first layer sees unit scale and learns
    # as fast as before: no flag, and the probe measures the input of the layer that learns.
    tiny = mlp.clone()
    with torch.no_grad():
        tiny.blocks["fc3"][0].weight.mul_(1e-3)
        tiny.blocks["fc3"][0].bias.mul_(1e-3)
    res = tl.run_study(tiny, digits, cfg)
    assert not any(f.startswith("head:") for f in res.analysis.slow_start_flags), res.analysis.slow_start_flags
    assert 0.5 < res.analysis.first_epochs.strategies["head"]["head"]["input_rms"] < 2.0


def test_top_activations_for_text_and_images(cnn, digits):
    from transferlab.measurements.activations import top_activations

    act = top_activations(cnn, prepared(cnn, digits), channels=3, top=4)
    assert act["block"] == "conv1" and len(act["channels"]) == 3 and act["grid_png"]
    assert all(len(c["top"]) == 4 for c in act["channels"])
    means = [c["mean"] for c in act["channels"]]
    assert means == sorted(means, reverse=True)


def test_depths_auto_runs_the_best_scored_cuts(cnn, digits):
    from transferlab.strategies.freeze import auto_depths

    fake = {"cuts": [{"k": k, "logme": s, "hscore": s, "knn_acc": s, "probe_acc": s} for k, s in
                     [(1, 0.1), (2, 0.9), (3, 0.5), (4, 0.7), (5, 0.2)]]}
    assert auto_depths(fake) == [0, 2, 3, 4]
    cfg = tl.StudyConfig(seeds=[0], sizes=[5], depths="auto", budget=tl.Budget(epochs=1, lrs=(1e-2,)),
                         strategies=["scratch", "freeze_k"])
    res = tl.run_study(cnn, digits, cfg)
    ran = sorted(t["params"]["k"] for t in res.trials if t["strategy"] == "freeze_k")
    assert ran == auto_depths(res.study["profile"])


def test_layers_resumes_from_its_store_and_runs_through_the_executors(tmp_path, cnn, digits):
    from transferlab.layers import run_layers
    from transferlab.training import Budget

    config = tl.StudyConfig(seeds=[0], sizes=[5], budget=Budget(epochs=2, lrs=(1e-2,)))
    first = run_layers(cnn, digits, config, tmp_path)
    store = tmp_path / "layers.jsonl"
    lines = store.read_text().splitlines()
    assert len(lines) == 1 + 2 * 2 * (cnn.n_blocks - 1), "the baseline B and every splice trial, each stored once"
    store.write_text("\n".join(lines[:4]) + "\n")  # as if stopped after four trials
    config.executor, config.workers = "process", 2
    again = run_layers(cnn, digits, config, tmp_path)
    assert len(store.read_text().splitlines()) == len(lines), "only the missing trials ran"
    key = lambda rows: sorted((r["curve"], r["n"], r["seed"]) for r in rows)  # noqa: E731
    assert key(again["records"]) == key(first["records"])
    kept = {json.loads(x)["trial_id"] for x in lines[:4]}
    assert len(kept) == 4
    before = len(store.read_text().splitlines())
    run_layers(cnn, digits, config, tmp_path)
    assert len(store.read_text().splitlines()) == before, "a finished run resumes to nothing"
