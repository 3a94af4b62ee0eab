"""Property: whatever a user types for an option or a study-file setting, the CLI exits 0, or 2 with at most three
lines on stderr; never a traceback, never a half-made study folder. The study is a dry run, so every check runs
and nothing trains. Derandomised: CI draws the same examples every time."""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import fields
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # about 2 minutes of dry runs: with the slow tests, which CI runs too
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.conftest import invoke  # noqa: E402
from transferlab.config import StudyConfig  # noqa: E402
from transferlab.training import Budget  # noqa: E402

BASE = ("run", "--model", "demo:mlp", "--data", "demo:digits", "--dry-run")
OPTIONS = ("--seeds", "--sizes", "--epochs", "--steps", "--workers", "--max-seeds", "--margin", "--augment", "--splits",
           "--schedule", "--depths", "--device", "--executor", "--strategies", "--halving", "--budget-opt")
WORDS = ("", "auto", "all", "none", "x", "1,2", "5,all", "0,5", "-1", "0", "1e9", "nan", "inf", "-inf", "[1,2]", "true",
         "crop,flip", "cuda:0", "scratch", "scratch,head", "1,,2", " ", "3.5")
SETTINGS = tuple(f.name for f in fields(StudyConfig) if f.name not in ("strategies",))
BUDGET = tuple(f.name for f in fields(Budget))

numbers = st.one_of(st.integers(-5, 5), st.integers(-10**4, 10**4), st.floats(allow_nan=True, allow_infinity=True))
cli_values = st.one_of(numbers.map(str), st.sampled_from(WORDS), st.text(max_size=5))
toml_scalars = st.one_of(numbers, st.booleans(), st.sampled_from(WORDS), st.text(max_size=5))
toml_values = st.one_of(toml_scalars, st.lists(st.one_of(st.integers(-3, 60), st.sampled_from(["all", "x"])), max_size=4))


def _check(code: int, err: str, out: Path) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert code in (0, 2), (code, err[-2000:])
    assert "Traceback" not in err, err
    assert code == 0 or len(lines) <= 3, err
    assert not out.exists(), "a dry run or a refused start must not leave a study folder"


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(OPTIONS), cli_values, st.sampled_from(BUDGET)), min_size=1, max_size=3))
def test_any_cli_option_value(picks):
    argv = list(BASE)
    for option, value, key in picks:
        if option == "--halving":
            argv.append("--halving" if value else "--no-halving")
        elif option == "--budget-opt":
            argv += [option, f"{key}={value}"]
        else:
            argv += [option, value]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "study"
        code, _, err = invoke(*argv, "--out", str(out))
        _check(code, err, out)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # numbers, and strings as TOML basic strings


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(SETTINGS + tuple(f"budget.{b}" for b in BUDGET)), toml_values)
def test_any_study_file_setting(setting, value):
    table, _, key = setting.rpartition(".")
    section = "[study.budget]" if table else "[study]"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "study"
        study = Path(tmp) / "study.toml"
        study.write_text(f'[model]\nspec = "demo:mlp"\n[data]\nspec = "demo:digits"\n{section}\n{key} = {_toml(value)}\n')
        code, _, err = invoke("run", "--config", str(study), "--out", str(out), "--dry-run")
        _check(code, err, out)


DATA_OPTS = ("val_frac", "test_frac", "seed", "subsample", "x_key", "y_key", "label_col", "size", "max_per_class")


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    path = tmp_path_factory.mktemp("fuzz") / "digits.npz"
    np.savez(path, X=(d.data / 16).astype(np.float32), y=d.target)
    return path


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(picks=st.lists(st.tuples(st.sampled_from(DATA_OPTS), cli_values), min_size=1, max_size=2))
def test_any_data_option(arrays, picks):
    argv = ["run", "--model", "demo:mlp", "--data", f"npz:{arrays}", "--dry-run", "--sizes", "5"]
    for key, value in picks:
        argv += ["--data-opt", f"{key}={value}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "study"
        code, _, err = invoke(*argv, "--out", str(out))
        _check(code, err, out)
