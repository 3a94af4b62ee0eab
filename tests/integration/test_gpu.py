"""The CUDA path, run on a real GPU: a small full study, and cached activations equal to the uncached forward pass.
Skipped without a GPU (``pytest -m gpu`` selects these on a machine that has one)."""
from __future__ import annotations

import pytest
import torch

import transferlab as tl
from tests.conftest import prepared
from transferlab.cache import FeatureCache
from transferlab.results import TrialSpec
from transferlab.trial import run_trial

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_small_full_study_on_cuda(cnn, digits, tmp_path):
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    cfg = tl.StudyConfig(seeds=[0, 1], sizes=[5, "all"], device="cuda",
                         budget=tl.Budget(epochs=4, patience=2, lrs=(3e-3, 1e-2)),
                         strategies=[{"name": n} for n in ("scratch", "linear_probe", "head", "freeze_k", "bn_adapt",
                                                           "finetune", "lp_ft", "gradual", "surgical")])
    res = tl.run_study(cnn, digits, cfg, tmp_path / "s")
    bad = [(r["label"], r["status"], r["error"]) for r in res.trials if r["status"] != "ok" or r.get("error")]
    assert not bad, bad
    assert all(r.get("moved") for r in res.trials if r["label"] == "finetune")  # what-moved ran on the device
    assert res.study["config"]["device"] == "cuda"
    for k, v in cnn.state_dict().items():  # the shared pretrained model was neither moved nor changed
        assert v.device.type == "cpu" and torch.equal(v, before[k]), k


def test_cached_features_equal_the_forward_pass_on_cuda(cnn, digits):
    from transferlab.accel import autocast

    data = prepared(cnn, digits)
    cache = FeatureCache(64, "cuda")
    cached = cache.states(cnn, "k", "val", data.val, 2).inputs
    model = cnn.clone().to("cuda").eval()
    with torch.no_grad(), autocast("cuda"):
        direct = model.features(data.val.inputs.to("cuda"), 2).float().cpu()
    assert cached.device.type == "cpu" and next(cnn.parameters()).device.type == "cpu"
    torch.testing.assert_close(cached, direct, rtol=0, atol=0)


@pytest.mark.parametrize("strategy,params", [("head", {"depth": 2, "hidden": 32, "dropout": 0.0}),
                                             ("freeze_k", {"k": 2, "train_bn": False})])
def test_cached_trial_equals_uncached_on_cuda(strategy, params, cnn, digits, tiny_budget):
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    data = prepared(cnn, digits)
    spec = TrialSpec(strategy, params, 3, 20)
    cache = FeatureCache(tiny_budget.eval_batch_size, "cuda")
    cache.want(range(1, cnn.n_blocks + 1))
    a = run_trial(spec, cnn, "k", data, tiny_budget, cache=cache, device="cuda")
    b = run_trial(spec, cnn, "k", data, tiny_budget, cache=None, device="cuda")
    assert a.status == b.status == "ok" and a.cached and not b.cached
    assert a.chosen == b.chosen
    assert abs(a.test_acc - b.test_acc) <= 1 / len(data.test)  # GPU reductions may differ in the last bit


@pytest.mark.parametrize("strategy", ["scratch", "finetune"])
def test_batched_members_on_cuda(strategy, cnn, digits, tiny_budget):
    """On a GPU ``auto`` batches a trial's LR candidates (members.py): they train as one model, and the trial
    agrees with its one-at-a-time twin up to GPU reductions (bf16 autocast)."""
    from transferlab.members import batch_mode

    assert batch_mode("auto", "cuda")[0]
    data = prepared(cnn, digits)
    spec = TrialSpec(strategy, {}, 1, 20)
    a = run_trial(spec, cnn, "k", data, tiny_budget, device="cuda", members=True)
    b = run_trial(spec, cnn, "k", data, tiny_budget, device="cuda")
    assert a.status == b.status == "ok" and a.members.startswith("batched"), a.members
    assert abs(a.test_acc - b.test_acc) <= 0.05
