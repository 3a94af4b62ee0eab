"""MNIST -> USPS, the classic cross-dataset digit transfer, on the real files in ../shared/data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, cli
from tests.helpers import pretrain

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (SHARED_DATA / "mnist").exists() or not (SHARED_DATA / "usps").exists(),
                                 reason="../shared/data (MNIST, USPS) is not present")]


def test_mnist_to_usps(tmp_path):
    import timm
    from safetensors.torch import save_file

    from transferlab.data.digitsets import arrays

    x, y = arrays("mnist", str(SHARED_DATA / "mnist"), "train", None, (32, 32), 1, max_per_class=400)
    model = pretrain(timm.create_model("resnet10t", num_classes=10, in_chans=1), (x - 0.449) / 0.226, y, epochs=3)
    weights = tmp_path / "mnist_r10t.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    weights.with_suffix(".json").write_text(json.dumps({"class_names": [str(c) for c in range(10)]}))
    res = cli("run", "--model", "timm:resnet10t", "--weights", str(weights), "--data", f"usps:{SHARED_DATA / 'usps'}",
              "--data-opt", "size=[32,32]", "--data-opt", "max_per_class=60", "--data-opt", "max_test_per_class=60",
              "--data-opt", "augment=none", "--max-seeds", "6", "--sizes", "5,20", "--epochs", "6",
              "--halving", "--budget-opt", "grid_extensions=0",  # a real-data pipeline test: kept short
              "--strategies", "scratch,linear_probe,finetune,lp_ft,freeze_k", "--out", str(tmp_path / "study"))
    assert res.returncode == 0, res.stderr[-3000:]
    analysis = json.loads((tmp_path / "study" / "analysis.json").read_text())
    print(json.dumps({"zero_shot": analysis["zero_shot"]["test_acc"],
                      "gains": [(g["label"], g["n_train"], round(g["gain"]["mean"], 3), g["verdict"]) for g in analysis["gains"]],
                      "rec": analysis["recommendation"]["text"]}, indent=1))
    zero = analysis["zero_shot"]
    assert zero is not None and zero["chosen"]["classes_shared"] == 10
    assert zero["test_acc"] > 0.3, "an MNIST model recognises USPS digits well above chance (10%) before any training"
    # A sequential study (3 seeds, then 6 where open): at 5 per class the MNIST features are decided better.
    best5 = max((g for g in analysis["gains"] if g["n_train"] == 5), key=lambda g: g["gain"]["mean"])
    assert best5["verdict"] == "better", best5


def test_usps_default_budget_converges():
    """Real data: a BatchNorm CNN pretrained on MNIST 0-4, USPS 0-4 read in MNIST's framing, the default step budget:
    at least 95% of the trials converge (the budget issue's bar), scratch included."""
    import sys

    import transferlab as tl
    from transferlab.data.digitsets import target

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from bench_sources_usps import pretrain as pretrain_cnn
    finally:
        sys.path.pop(0)

    source = pretrain_cnn(SHARED_DATA, "0-4")
    data = target("usps", str(SHARED_DATA / "usps"), classes="0-4", frame="mnist", max_test_per_class=100)
    cfg = tl.StudyConfig(seeds=[0, 1, 2], sizes=[5], profile=False,
                         strategies=[{"name": s} for s in ("scratch", "linear_probe", "head", "finetune")])
    res = tl.run_study(source, data, cfg, report=False)
    rows = {c.label: c for c in res.analysis.convergence}
    print({k: (c.converged, c.trials, c.not_converged) for k, c in rows.items()})
    assert "limit" not in rows["scratch"].not_converged, "no scratch run was still improving when it was stopped"
    assert res.analysis.converged_share() >= 0.95
