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
CONCRETE = {"freeze_k": {"k": 2}, "surgical": {"block": 1}, "truncate": {"n": 2}}


def spec(name, seed=0, n=5):
    s = from_spec(name, CONCRETE.get(name))
    return TrialSpec(s.name, s.params(), seed, n, s.label)


def test_every_strategy_is_covered():
    assert {"scratch", "linear_probe", "head", "freeze_k", "finetune", "lp_ft", "gradual", "bn_adapt", "surgical",
            "l2sp", "lora", "splice", "truncate"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
    s = from_spec(name, CONCRETE.get(name))
    params = json.loads(json.dumps(s.params()))
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    assert from_spec(name, params) == s


@pytest.mark.parametrize("name", NAMES)
def test_check_strategy_passes_every_registered_strategy(name, cnn, digits, tiny_budget):
    """The public conformance suite (transferlab.testing), which a plugin author runs on their own strategy."""
    from transferlab.testing import CHECKS, check_strategy

    strategy = from_spec(name, CONCRETE.get(name))
    reason = strategy.applies(cnn)
    if reason:  # lora: checked on a transformer in test_lora_passes_the_conformance_suite_on_minilm
        pytest.skip(f"{name} does not apply to the demo CNN: {reason}")
    assert check_strategy(strategy, cnn, digits, tiny_budget) == list(CHECKS)


def test_check_strategy_catches_a_strategy_that_breaks_the_rules(cnn, digits, tiny_budget):
    from dataclasses import dataclass

    from transferlab.strategies.base import STRATEGIES, Strategy
    from transferlab.strategies.finetune import FineTune
    from transferlab.testing import check_strategy

    @dataclass(frozen=True)
    class GreedyTune(FineTune):  # tunes twice as many values as the others: an unfair search
        name = "greedy_tune_for_test"

        def candidates(self, budget):
            return [{"lr": lr, "body_lr_mult": m} for lr in budget.lrs for m in (0.1, 1.0)]

    STRATEGIES.register(GreedyTune.name, GreedyTune)
    try:
        with pytest.raises(AssertionError, match="as many as the LR grid"):
            check_strategy(GreedyTune(), cnn, digits, tiny_budget)
    finally:
        STRATEGIES._entries.pop(GreedyTune.name)

    @dataclass(frozen=True)
    class Unregistered(Strategy):
        name = "nobody_registered_me"

    with pytest.raises(AssertionError, match="not registered"):
        check_strategy(Unregistered(), cnn, digits, tiny_budget)
