"""The study pipeline: one shared pass for the preflight measurements, plugins measured, refusals before writing."""
from __future__ import annotations

import json

import pytest

import transferlab as tl
from transferlab.errors import UserError
from transferlab.training import Budget


def test_preflight_measurements_share_one_pass_per_split(cnn, digits):
    from transferlab.pipeline import preflight

    prep = preflight(cnn, digits, tl.StudyConfig(seeds=[0]), None)
    assert {"profile", "activations", "similarity", "inputs", "batchnorm"} <= set(prep.measurements)
    # train, val (and the source sample, for the A-distance) each pass through the pretrained body once,
    # yielding every cut the measurements declared
    assert prep.cache.passes == 2 + (digits.source is not None)
    assert {k for _, split, k in prep.cache._mem if split == "train"} == set(range(1, cnn.n_blocks + 1))


def test_a_registered_measurement_runs_and_lands_in_study_json(tmp_path, mlp, digits):
    from transferlab.measurements import MEASUREMENTS, Measurement, register

    class MeanActivation(Measurement):
        name = "mean_last_activation_for_test"

        def cuts(self, backbone):
            return [backbone.n_blocks]

        def measure(self, pf):
            return float(pf.states("val", pf.backbone.n_blocks).inputs.mean())

    register(MeanActivation)
    try:
        config = tl.StudyConfig(strategies=["scratch", "head"], seeds=[0], sizes=[5], budget=Budget(epochs=1, lrs=(1e-2,)))
        tl.run_study(mlp, digits, config, out=tmp_path, report=False)
    finally:
        MEASUREMENTS._entries.pop(MeanActivation.name)
    study = json.loads((tmp_path / "study.json").read_text())
    assert isinstance(study["mean_last_activation_for_test"], float)


@pytest.mark.parametrize("change", [{"depths": "auto", "profile": False}, {"sizes": [10_000]},
                                    {"strategies": []}])
def test_a_refused_study_writes_nothing(tmp_path, mlp, digits, change):
    config = tl.StudyConfig(seeds=[0], **change)
    with pytest.raises(UserError):
        tl.run_study(mlp, digits, config, out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_unknown_settings_everywhere_get_the_closest_name(tmp_path):
    from transferlab.config import budget_from_dict, read_study_file
    from transferlab.strategies.base import from_spec

    with pytest.raises(UserError, match="did you mean: epochs"):
        budget_from_dict({"epoch": 3})
    with pytest.raises(UserError, match="did you mean: body_lr_mult"):
        from_spec("finetune", {"body_lr_mul": 0.1})
    (tmp_path / "s.toml").write_text('[study]\nmax_seed = 3\n[model]\nspec = "demo:mlp"\n[data]\nspec = "demo:digits"\n')
    with pytest.raises(UserError, match="did you mean: max_seeds"):
        read_study_file(tmp_path / "s.toml")
