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
GIVEN = {"--config", "--model", "--data", "--out", "--dry-run"}  # what BASE and the harness set


def _run_options() -> dict:
    """Every option of ``transferlab run``, read from the command itself (a new option is fuzzed without a word
    here): its name -> whether it is a flag, and its negation if it has one."""
    import typer.main

    from transferlab.cli.app import app

    run = typer.main.get_command(app).commands["run"]
    return {max(p.opts, key=len): (bool(getattr(p, "is_flag", False)), (p.secondary_opts or [None])[0])
            for p in run.params if p.param_type_name == "option"}


RUN_OPTIONS = _run_options()
OPTIONS = tuple(sorted(o for o in RUN_OPTIONS if o not in GIVEN))
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
    with tempfile.TemporaryDirectory() as tmp:
        for option, value, key in picks:
            flag, negation = RUN_OPTIONS[option]
            if flag:
                argv.append(option if value or negation is None else negation)
            elif option in ("--budget-opt", "--model-opt", "--data-opt"):
                argv += [option, f"{key}={value}"]
            elif option in ("--weights", "--save-best"):  # a path: under the temporary folder, whatever its name
                argv += [option, str(Path(tmp) / (value.replace("/", "_") or "_"))]
            else:
                argv += [option, value]
        out = Path(tmp) / "study"
        code, _, err = invoke(*argv, "--out", str(out))
        _check(code, err, out)


def _strategy_params() -> list[tuple[str, str]]:
    from dataclasses import fields as dc_fields

    from transferlab.strategies.base import STRATEGIES

    return [(n, f.name) for n in STRATEGIES.names() for f in dc_fields(STRATEGIES.get(n))]


STRATEGY_PARAMS = _strategy_params()


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(STRATEGY_PARAMS), cli_values), min_size=1, max_size=2))
def test_any_strategy_parameter(picks):
    """Every registered strategy's every parameter, any value, on the command line and in a study file."""
    text = ",".join(f"{name}({param}={value})" for (name, param), value in picks)
    tables = "".join(f'[[strategies]]\nname = "{name}"\nparams = {{ {param} = {_toml(value)} }}\n'
                     for (name, param), value in picks)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "study"
        code, _, err = invoke(*BASE, "--strategies", f"scratch,{text}", "--out", str(out))
        _check(code, err, out)
        study = Path(tmp) / "study.toml"
        study.write_text(f'[model]\nspec = "demo:mlp"\n[data]\nspec = "demo:digits"\n{tables}')
        code, _, err = invoke("run", "--config", str(study), "--out", str(out), "--dry-run")
        _check(code, err, out)


def test_the_fuzz_covers_every_option_and_key():
    """The fuzz's reach, counted (issue 35): every option of run but those the harness sets, every [study] and budget
    key, every strategy parameter."""
    study_keys = {f.name for f in fields(StudyConfig)} - {"strategies"}
    assert set(OPTIONS) == set(RUN_OPTIONS) - GIVEN and len(OPTIONS) >= 24
    assert set(SETTINGS) == study_keys and set(BUDGET) == {f.name for f in fields(Budget)}
    assert len({n for n, _ in STRATEGY_PARAMS}) >= 10


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


@settings(max_examples=16, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(["csv", "npz"]), rows=st.integers(0, 40), labels=st.integers(0, 40),
       width=st.sampled_from([0, 5, 63, 64, 65]), codes=st.sampled_from(["ints", "names", "one", "negative", "floats"]),
       bad=st.sampled_from([None, "nan", "inf"]), extra=st.sampled_from([None, "empty", "id"]))
def test_any_data_file_runs_for_real(kind, rows, labels, width, codes, bad, extra):
    """Data files drawn at random (rows against labels, width against the demo MLP's 64 inputs, label codes and
    names, non-finite values, empty and id-like columns), run for real with a tiny budget, not dry: exit 0 with a
    report, or 2 with one line and no folder; never a traceback."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(rows * 1000 + labels)
    x = rng.random((rows, width)).astype(np.float32)
    n = rows if kind == "csv" else labels
    y = {"ints": np.arange(n) % 3, "names": np.array(["cat", "dog", "eel"] * 14)[:n], "one": np.zeros(n, int),
         "negative": np.arange(n) % 3 - 1, "floats": (np.arange(n) % 3) + 0.5}[codes]
    if bad and rows and width:
        x[rows // 2, 0] = np.nan if bad == "nan" else np.inf
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d.{kind}"
        if kind == "csv":
            frame = pd.DataFrame({**{f"f{i}": x[:, i] for i in range(width)}, "label": y})
            if extra == "empty":
                frame["note"] = ""
            elif extra == "id":
                frame.insert(0, "id", [f"u{i}" for i in range(rows)])
            frame.to_csv(path, index=False)
        else:
            np.savez(path, X=x, y=y)
        out = Path(tmp) / "study"
        code, _, err = invoke("run", "--model", "demo:mlp", "--data", f"{kind if kind == 'npz' else 'table'}:{path}",
                              "--seeds", "1", "--sizes", "2", "--steps", "5", "--strategies", "scratch,head",
                              "--augment", "none", "--out", str(out))
        assert code in (0, 2) and "Traceback" not in err, (code, err[-2000:])
        if code == 2:
            assert len([x for x in err.splitlines() if x.startswith("transferlab: error:")]) == 1, err[-2000:]
            assert not out.exists(), "a refused start must not leave a study folder"
        else:
            assert (out / "report.html").exists() and (out / "trials.jsonl").exists()


MODES = ("1", "L", "P", "RGB", "RGBA", "CMYK", "I;16", "JPEG", "empty", "garbage")


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(files=st.lists(st.tuples(st.sampled_from(MODES), st.integers(3, 40), st.integers(3, 40)), min_size=8, max_size=16))
def test_any_image_folder_runs_for_real(files):
    """Image folders drawn at random: files of every mode PIL writes (bilevel, grey, palette, RGB, RGBA, CMYK,
    16-bit, JPEG), sizes from 3 to 40 pixels a side, empty and garbage files among them, dealt to two classes; run for
    real with a tiny budget: exit 0 with a report (a few bad files skipped and named in one warning line), or 2 with
    one line and no folder (too many bad files); never a traceback."""
    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        rng = np.random.default_rng(len(files))
        for i, (mode, w, h) in enumerate(files):
            folder = root / ("a" if i % 2 else "b")
            folder.mkdir(parents=True, exist_ok=True)
            if mode == "empty":
                (folder / f"{i}.png").write_bytes(b"")
            elif mode == "garbage":
                (folder / f"{i}.png").write_bytes(b"\x89PNG not really")
            else:
                pic = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
                if mode == "JPEG":
                    pic.save(folder / f"{i}.jpg")
                else:
                    pic.convert(mode).save(folder / f"{i}.{'tif' if mode in ('CMYK', 'I;16') else 'png'}")
        out = Path(tmp) / "study"
        code, _, err = invoke("run", "--model", "demo:cnn", "--data", f"images:{root}", "--seeds", "1", "--sizes", "2",
                              "--steps", "5", "--strategies", "scratch,head", "--augment", "none", "--out", str(out))
        assert code in (0, 2) and "Traceback" not in err, (code, err[-2000:])
        errors = [x for x in err.splitlines() if x.startswith("transferlab: error:")]
        if code == 2:
            assert len(errors) == 1 and not out.exists(), err[-2000:]
        else:
            assert (out / "report.html").exists()
            assert len([x for x in err.splitlines() if x.startswith("transferlab: warning:")]) <= 1
