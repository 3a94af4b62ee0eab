"""The CLI: bad input gets one line and exit status 2; demo and report work end to end."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import cli


def _one_line_error(res, *words):
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_unknown_strategy(tmp_path):
    res = cli("run", "--model", "demo:mlp", "--data", "demo:digits", "--strategies", "scratch,finetun", "--out", str(tmp_path))
    _one_line_error(res, "unknown strategy 'finetun'", "did you mean: finetune")


def test_k_beyond_blocks(tmp_path):
    (tmp_path / "s.toml").write_text('[model]\nspec = "demo:mlp"\n[data]\nspec = "demo:digits"\n'
                                     '[[strategies]]\nname = "freeze_k"\nparams = { k = 7 }\n')
    res = cli("run", "--config", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"))
    _one_line_error(res, "k=7", "choose k between 0 and 3")


def test_one_class_target(tmp_path):
    np.savez(tmp_path / "one.npz", X=np.random.rand(30, 1, 8, 8).astype("float32"), y=np.zeros(30, dtype=int))
    res = cli("run", "--model", "demo:cnn", "--data", f"npz:{tmp_path / 'one.npz'}", "--out", str(tmp_path / "o"))
    _one_line_error(res, "1 class", "at least 2")


def test_sizes_larger_than_data(tmp_path):
    res = cli("run", "--model", "demo:mlp", "--data", "demo:digits", "--sizes", "5,500", "--out", str(tmp_path))
    _one_line_error(res, "size 500 per class", "at most")


@pytest.mark.parametrize("content", ["[model\nspec=", "\x00\x01garbage = = ="])
def test_unreadable_config(tmp_path, content):
    (tmp_path / "bad.toml").write_text(content)
    res = cli("run", "--config", str(tmp_path / "bad.toml"))
    _one_line_error(res, "not valid TOML")


def test_missing_config_and_debug_traceback(tmp_path):
    res = cli("run", "--config", str(tmp_path / "nope.toml"))
    _one_line_error(res, "does not exist")
    res = cli("run", "--config", str(tmp_path / "nope.toml"), env={"TRANSFERLAB_DEBUG": "1"})
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_nan_features(tmp_path):
    x = np.random.rand(40, 1, 8, 8).astype("float32")
    x[3, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", X=x, y=np.arange(40) % 2)
    res = cli("run", "--model", "demo:cnn", "--data", f"npz:{tmp_path / 'nan.npz'}", "--out", str(tmp_path / "o"))
    _one_line_error(res, "NaN", "impute or drop")


@pytest.mark.slow  # a long end-to-end run: in the slow suite, which CI runs too
def test_demo_end_to_end_and_report_rebuild(tmp_path):
    out = tmp_path / "demo"
    res = cli("demo", "--out", str(out), "--seeds", "2", "--sizes", "5,all", "--epochs", "3", "--halving",
              "--budget-opt", "grid_extensions=0")
    assert res.returncode == 0, res.stderr
    assert "Recommendation:" in res.stdout and "report:" in res.stdout and "which pretrained model" in res.stdout
    for arch in ("mlp", "cnn10"):
        folder = out / arch
        for name in ("study.json", "trials.jsonl", "summary.csv", "report.html", "analysis.json"):
            assert (folder / name).exists(), name
        trials = [json.loads(x) for x in (folder / "trials.jsonl").read_text().splitlines()]
        study = json.loads((folder / "study.json").read_text())
        assert len([t for t in trials if t["strategy"] != "zero_shot"]) == study["n_trials"]  # cnn10 knows 5-9
        for t in trials:
            for key in ("strategy", "params", "seed", "n_train", "test_acc", "best_val_acc", "history", "wall_s", "status"):
                assert key in t
        # The demo's own plan (demo.DEMO_STRATEGIES), not the standard set; zero-shot is recorded beside it.
        assert {t["label"] for t in trials} - {"zero_shot"} == {
            "scratch", "linear_probe", "head", "freeze_k(k=2)", "finetune"}
    # The report rebuilds from the JSON alone, in a process where torch cannot be imported.
    (out / "cnn10" / "report.html").unlink()
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError('torch is blocked in this test')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from transferlab.report.html import write_report\n"
            f"print(write_report({str(out / 'cnn10')!r}))\n"
            "assert 'torch' not in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    html = (out / "cnn10" / "report.html").read_text()
    assert "Recommendation" in html and html.count("data:image/png;base64,") >= 4
    res = cli("report", str(out / "mlp"))
    assert res.returncode == 0 and "report.html" in res.stdout
    _one_line_error(cli("report", str(tmp_path)), "not a study folder")
    # The demo is one multi-source study: its comparison report rebuilds without torch too.
    comparison = json.loads((out / "comparison.json").read_text())
    rec, last = comparison["recommendation"], comparison["rankings"][-1]
    chosen = "none: scratch" if rec["source"] is None else rec["source"]
    assert rec["leader"] == last["leader"] and (chosen == last["leader"] or rec["source"] in rec["equivalent_to_leader"])
    (out / "report.html").unlink()
    code = code.replace("from transferlab.report.html import write_report", "from transferlab.report.sources import "
                        "write_sources_report as write_report").replace(repr(str(out / "cnn10")), repr(str(out)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    html = (out / "report.html").read_text()
    assert comparison["recommendation"]["text"][:80] in html and "mlp/report.html" in html


@pytest.mark.slow  # a long end-to-end run: in the slow suite, which CI runs too
def test_output_without_a_terminal_is_plain_lines_and_tables_keep_their_labels(tmp_path):
    import io
    import re

    from rich.console import Console

    from transferlab.cli.progress import _table

    res = cli("run", "--model", "demo:cnn", "--data", "demo:digits", "--seeds", "2", "--sizes", "5", "--epochs", "1",
              "--strategies", "scratch,head", "--out", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr
    lines = [x for x in res.stderr.splitlines() if re.match(r"^\[\d+/4\] ", x)]
    assert len(lines) == 4 and "left)" in lines[0] and lines[-1].startswith("[4/4] head n=5 s=1")
    assert "…" not in res.stderr + res.stdout and "━━" not in res.stderr  # no bar, nothing cut
    buf = io.StringIO()
    table = _table("t", ("strategy", "test acc %"), ("strategy",))
    label = "linear_probe(kind=svm, Cs=(0.01, 1.0, 100.0))"
    table.add_row(label, "99.9")
    Console(file=buf, width=40).print(table)
    folded = "".join(line.strip("│ ").split("│")[0].strip() for line in buf.getvalue().splitlines()[3:-1])
    assert label.replace(" ", "") in folded.replace(" ", "")


@pytest.mark.slow  # a long end-to-end run: in the slow suite, which CI runs too
def test_budget_settings_from_the_command_line_are_checked(tmp_path):
    res = cli("run", "--model", "demo:mlp", "--data", "demo:digits", "--budget-opt", "min_step=10", "--out", str(tmp_path / "o"))
    _one_line_error(res, "unknown budget setting 'min_step'", "min_steps")
    res = cli("run", "--model", "demo:mlp", "--data", "demo:digits", "--steps", "0", "--out", str(tmp_path / "o"))
    _one_line_error(res, "budget steps 0 is not a positive whole number")
    res = cli("run", "--model", "demo:mlp", "--data", "demo:digits", "--steps", "10", "--epochs", "3", "--out", str(tmp_path / "o"))
    _one_line_error(res, "--epochs and --steps both set the budget")
    res = cli("run", "--model", "demo:mlp", "--data", "demo:digits", "--budget-opt", "lrs=0.01", "--out", str(tmp_path / "o"))
    _one_line_error(res, "budget lrs 0.01 is not a list of numbers")
    assert not (tmp_path / "o").exists()
    res = cli("run", "--model", "demo:mlp", "--data", "demo:digits", "--steps", "12", "--budget-opt", "lrs=[0.01]",
              "--seeds", "1", "--sizes", "5", "--strategies", "scratch", "--out", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert study["config"]["budget"]["steps"] == 12 and study["config"]["budget"]["lrs"] == [0.01]
    trial = json.loads((tmp_path / "s" / "trials.jsonl").read_text().splitlines()[0])
    assert trial["steps_run"] == 12 and trial["budget_steps"] == 12, "an explicit budget is kept as given"
    assert "12 optimizer steps per candidate" in study["budget_rule"]
