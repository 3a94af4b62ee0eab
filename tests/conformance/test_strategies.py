"""Every registered strategy obeys the same contract."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import prepared
from transferlab.strategies.base import from_spec, registry
from transferlab.results import TrialSpec
from transferlab.trial import run_trial

NAMES = sorted(registry())
# freeze_k's default (k=None) expands to every cut; conformance uses one concrete cut.
CONCRETE = {"freeze_k": {"k": 2}}


def spec(name, seed=0, n=5):
    s = from_spec(name, CONCRETE.get(name))
    return TrialSpec(s.name, s.params(), seed, n, s.label)


def test_every_strategy_is_covered():
    assert {"scratch", "linear_probe", "head", "freeze_k", "finetune", "lp_ft", "gradual"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    s = from_spec(name, CONCRETE.get(name))
    params = json.loads(json.dumps(s.params()))
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    assert from_spec(name, params) == s


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_result(name, cnn, digits, tiny_budget):
    data = prepared(cnn, digits)
    a = run_trial(spec(name), cnn, "k", data, tiny_budget)
    b = run_trial(spec(name), cnn, "k", data, tiny_budget)
    assert a.status == "ok", a.error
    assert a.test_acc == b.test_acc
    strip = lambda hs: [{k: v for k, v in h.items() if k != "seconds"} for h in hs]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert a.chosen == b.chosen


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_untouched_and_frozen_blocks_bit_identical(name, cnn, digits, tiny_budget):
    """The pretrained backbone is never modified, and frozen blocks (weights and BN statistics) stay bit-identical."""
    data = prepared(cnn, digits)
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    kept = []
    rec = run_trial(spec(name), cnn, "k", data, tiny_budget, keep=kept)
    assert rec.status == "ok", rec.error
    for k, v in cnn.state_dict().items():
        assert torch.equal(v, before[k]), f"{name} modified the pretrained weights ({k})"
    trained = kept[0].model
    if not hasattr(trained, "blocks"):
        return  # a scikit-learn probe: the body is only read
    for i, block_name in enumerate(trained.block_names[: rec.frozen_blocks]):
        for key, value in trained.blocks[block_name].state_dict().items():
            assert torch.equal(value.cpu(), before[f"blocks.{block_name}.{key}"]), f"frozen {block_name}.{key} changed"
    if rec.frozen_blocks == 0 and rec.best_epoch > 0:  # lp_ft may keep its epoch-0 probe checkpoint
        changed = [k for k, v in trained.blocks.state_dict().items() if not torch.equal(v.cpu(), before[f"blocks.{k}"])]
        assert changed, f"{name} trains the body, yet no body weight changed"
