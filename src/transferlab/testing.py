"""``check_strategy``: the conformance suite every built-in strategy passes, for a plugin author's own.

    from transferlab.testing import check_strategy
    check_strategy(MyStrategy(alpha=0.1))           # in a test of the plugin's package

Each check raises ``AssertionError`` naming the rule broken. It trains tiny trials on the
demo model and scikit-learn's bundled digits unless given a backbone and data.
"""
from __future__ import annotations

import dataclasses
import json

import torch

CHECKS = (
    "registered under its name", "holds only hyperparameters (a frozen dataclass; params round-trip through JSON)",
    "tunes as many values as the LR grid", "same seed, same result", "leaves the pretrained model untouched",
    "keeps frozen blocks bit-identical", "reads the test split once, after training", "cached equals uncached",
    "says truly where training starts (trains_from, which the cost estimate times)",
)


class NotApplicable(Exception):
    """The strategy says it does not apply to the given model (``Strategy.applies``): nothing was checked."""


def _default_inputs(backbone, data, budget):
    from transferlab import zoo
    from transferlab.data.builtin import digits_target
    from transferlab.training import Budget

    backbone = backbone if backbone is not None else zoo.pretrained("cnn")
    data = data if data is not None else digits_target()
    budget = budget or Budget(epochs=3, patience=2, batch_size=16, lrs=(3e-3, 1e-2))
    return backbone, data, budget


def check_strategy(strategy, backbone=None, data=None, budget=None, n_train: int | str = 5) -> list[str]:
    """Run the conformance checks on ``strategy`` (an instance, or a registered name). Returns the checks passed."""
    from transferlab.cache import FeatureCache
    from transferlab.pipeline import prepare
    from transferlab.results import TrialSpec
    from transferlab.strategies.base import Strategy, from_spec, registry
    from transferlab.trial import run_trial

    strategy = from_spec(strategy) if isinstance(strategy, str) else strategy
    cls = type(strategy)
    assert isinstance(strategy, Strategy), f"{cls.__name__} is not a transferlab Strategy"
    assert registry().get(cls.name) is cls, f"{cls.__name__} is not registered as '{cls.name}' (decorate it with @register)"
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, f"{cls.__name__} must be a frozen dataclass"
    params = json.loads(json.dumps(strategy.params()))
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    assert from_spec(cls.name, params) == strategy, f"{cls.__name__}'s params() do not rebuild it through JSON"
    backbone, data, budget = _default_inputs(backbone, data, budget)
    strategy.check(backbone)
    reason = strategy.applies(backbone)
    if reason:
        raise NotApplicable(f"{cls.__name__} does not apply to this model: {reason}")
    assert len(strategy.candidates(budget)) == len(budget.lrs), (
        f"{cls.__name__} tunes {len(strategy.candidates(budget))} values; every strategy gets as many as the LR grid "
        f"({len(budget.lrs)}), so none is favoured by a larger search")
    data = prepare(data, backbone)
    spec = TrialSpec(cls.name, strategy.params(), 0, n_train, strategy.label)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    kept: list = []
    start = len(data.test.log)
    a = run_trial(spec, backbone, "check", data, budget, keep=kept)
    assert a.status == "ok", f"{cls.__name__} failed on the demo model: {a.error or a.status}"
    scored = [r for _, r in data.test.log[start:] if not r.startswith("check:")]
    assert scored == [spec.trial_id], f"the test split was read {len(scored)} times in one trial, not once"
    b = run_trial(spec, backbone, "check", data, budget)
    assert (a.test_acc, a.chosen) == (b.test_acc, b.chosen), f"{cls.__name__} gives another result with the same seed"
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), f"{cls.__name__} modified the pretrained model ({k}): train a ctx.fresh() copy"
    trained = kept[0].model
    start = strategy.trains_from(backbone)
    assert start is None or 0 <= start <= backbone.n_blocks, f"{cls.__name__}.trains_from gives {start}, not 0..n or None"
    if start and hasattr(trained, "blocks"):
        assert set(range(start)) <= set(trained.frozen), (
            f"{cls.__name__}.trains_from says blocks before {start} stay frozen, but it trained some of them")
    if hasattr(trained, "blocks"):
        # Frozen weights never change; BatchNorm statistics may, where the strategy adapts them on purpose.
        weights_only = trained.train_bn or cls.adapts_statistics
        for name in [n for i, n in enumerate(trained.block_names) if i in trained.frozen]:
            block = trained.blocks[name]
            state = dict(block.named_parameters()) if weights_only else block.state_dict()
            for key, value in state.items():
                assert torch.equal(value.detach().cpu(), before[f"blocks.{name}.{key}"]), f"frozen block {name}.{key} changed"
    cached = run_trial(spec, backbone, "check", data, budget, FeatureCache(budget.eval_batch_size))
    assert abs(cached.test_acc - a.test_acc) < 1e-6, (
        f"{cls.__name__} scores {cached.test_acc} with the feature cache and {a.test_acc} without: cached "
        "activations must be exact (cache only blocks that are frozen and in eval mode)")
    return list(CHECKS)
