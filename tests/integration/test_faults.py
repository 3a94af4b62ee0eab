"""Faults a careful reading found; each test failed before its fix."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA, cli
from tests.integration.test_bad_input import fails

MLP_MODULE = textwrap.dedent("""
    from torch import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU())
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            return self.fc(self.body(x))
""")


def test_a_winning_head_with_dropout_is_saved_and_loaded(tmp_path, cnn, digits, tiny_budget):
    from tests.conftest import prepared
    from transferlab.results import TrialSpec
    from transferlab.saving import load_saved, save_model
    from transferlab.trial import run_trial

    data = prepared(cnn, digits)
    kept: list = []
    spec = TrialSpec("head", {"depth": 2, "hidden": 16, "dropout": 0.5}, 0, 5)
    assert run_trial(spec, cnn, "k", data, tiny_budget, keep=kept).status == "ok"
    save_model(kept[0], cnn, tmp_path / "best", digits.class_names, spec.label)
    loaded, meta = load_saved(tmp_path / "best")  # failed: the Dropout shifted the head's module indices
    x = data.val.inputs[:32]
    want = kept[0].model.eval()(x)
    torch.testing.assert_close(loaded(x), want)
    assert [layer["type"] for layer in meta["head"]] == ["standardize", "linear", "relu", "dropout", "linear"]


def test_a_bad_executor_or_device_is_refused_before_anything_is_written(tmp_path):
    fails(tmp_path, "run", "--model", "demo:mlp", "--data", "demo:digits", "--executor", "rayy",
          words=("unknown executor 'rayy'", "did you mean: ray"))
    fails(tmp_path, "run", "--model", "demo:mlp", "--data", "demo:digits", "--device", "gpu", words=("unknown device",))
    if not torch.cuda.is_available():
        fails(tmp_path, "run", "--model", "demo:mlp", "--data", "demo:digits", "--device", "cuda", words=("no CUDA GPU",))


def test_a_misspelled_model_option_is_refused_with_the_closest_name(tmp_path):
    fails(tmp_path, "run", "--model", "demo:mlp", "--model-opt", "pretraind=false", "--data", "demo:digits",
          words=("no option 'pretraind'", "did you mean: pretrained"))
    fails(tmp_path, "run", "--model", "timm:resnet10t", "--model-opt", "in_chan=1", "--data", "demo:digits",
          words=("no option 'in_chan'", "did you mean: in_chans"))


@pytest.mark.parametrize("schema", [99, "x"])
def test_a_study_folder_of_another_version_is_one_line(tmp_path, schema):
    out = tmp_path / "study-out"
    out.mkdir()
    (out / "study.json").write_text(json.dumps({"schema": schema, "config": {"a_setting_from_the_future": 1}}))
    for args in (("run", "--model", "demo:mlp", "--data", "demo:digits", "--out", str(out)), ("report", str(out))):
        res = cli(*args)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert "another transferlab version" in res.stderr and "upgrade" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["study.json"]


def test_an_old_study_folder_with_unknown_settings_is_refused_not_a_type_error(tmp_path):
    from transferlab.errors import UserError
    from transferlab.pipeline import check_folder
    from transferlab.config import StudyConfig

    from transferlab.results import SCHEMA_VERSION

    (tmp_path / "study.json").write_text(json.dumps({"schema": SCHEMA_VERSION, "model_key": "m", "data_key": "d",
                                                     "config": {"seeds": [0], "gone_setting": 3}}))
    with pytest.raises(UserError, match="holds a different study"):  # was: TypeError from StudyConfig(**old)
        check_folder(tmp_path, "m", "d", StudyConfig())


def test_model_and_data_that_disagree_in_shape_give_one_line(tmp_path):
    (tmp_path / "shapemod.py").write_text(MLP_MODULE)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=rng.normal(size=(60, 3, 8, 8)).astype(np.float32), y=np.arange(60) % 3)
    line = fails(tmp_path, "run", "--model", "torch:shapemod:MLP", "--data", f"npz:{tmp_path / 'd.npz'}",
                 words=("fails on the data's inputs of shape (2, 3, 8, 8)", "input_shape"), env={"PYTHONPATH": str(tmp_path)})
    assert "mat1 and mat2" in line


@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="needs ../shared/data/mnist")
def test_a_torch_model_reads_mnist_at_its_own_size_and_channels_can_be_given():
    from transferlab.sources import load_data, load_model

    source = load_model("torch:torch.nn:Identity")  # no input_shape: the data keeps MNIST's own 1x28x28
    data = load_data(f"mnist:{SHARED_DATA / 'mnist'}", model=source, max_per_class=3, max_test_per_class=3, classes="0-1")
    assert tuple(data.train.inputs.shape[1:]) == (1, 28, 28)
    data = load_data(f"mnist:{SHARED_DATA / 'mnist'}", model=source, channels=3, max_per_class=3,  # was: a TypeError
                     max_test_per_class=3, classes="0-1")
    assert tuple(data.train.inputs.shape[1:]) == (3, 28, 28)


def test_usps_can_be_framed_like_mnist():
    from transferlab.data.digitsets import mnist_frame

    framed = mnist_frame(torch.ones(2, 1, 16, 16))
    assert framed.shape == (2, 1, 28, 28)
    assert float(framed[..., :4, :].abs().sum() + framed[..., -4:, :].abs().sum()) == 0.0  # a 4-pixel empty border
    assert float(framed[..., 4:24, 4:24].min()) > 0.99  # the digit fills the 20x20 box, as MNIST's do
    if (SHARED_DATA / "usps").exists():
        from transferlab.sources import load_data

        data = load_data(f"usps:{SHARED_DATA / 'usps'}", frame="mnist", max_per_class=3, max_test_per_class=3, classes="0-1")
        assert float(data.train.inputs[..., :4, :].abs().max()) == 0.0
        assert data.split_info["frame"] == "mnist"


def test_every_test_split_read_is_logged_and_checks_come_before_scoring(digits, mlp):
    from transferlab import StudyConfig
    from transferlab.execution import run_study
    from transferlab.training import Budget

    config = StudyConfig(strategies=["scratch", "head"], seeds=[0], sizes=[5], budget=Budget(epochs=2, lrs=(1e-2,)),
                         profile=False)
    result = run_study(mlp, digits, config)
    reasons = [reason for _, reason in digits.test.log]
    checks = [i for i, r in enumerate(reasons) if r.startswith("check:")]
    scored = [r for r in reasons if not r.startswith("check:")]
    assert set(reasons[i] for i in checks) <= {"check:labels", "check:preprocess", "check:fingerprint", "check:resplit"}
    assert max(checks) < min(i for i, r in enumerate(reasons) if not r.startswith("check:"))
    assert sorted(scored) == sorted(r["trial_id"] if r["strategy"] != "zero_shot" else "zero_shot"
                                    for r in result.trials)
