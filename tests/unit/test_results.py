"""Typed results: the analysis round-trips through JSON, and every read of a study folder checks its schema."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from transferlab.analysis import Analysis, analyze
from transferlab.analysis.stats import Design
from transferlab.analysis.types import Comparison, Placement
from transferlab.errors import UserError
from transferlab.results import SCHEMA_VERSION, check_schema, read_study
from tests.unit.test_verdicts import _study_records


def _analysis() -> tuple[Analysis, dict]:
    study = {"design": Design(looks=(5,)).to_dict(), "data": {"class_names": list("abcde")}, "model": {"blocks": []}}
    return analyze(_study_records(np.random.default_rng(0)), study), study


def test_the_analysis_round_trips_through_json_as_typed_objects():
    a, _ = _analysis()
    text = json.dumps(a.to_dict(), sort_keys=True)
    back = Analysis.from_dict(json.loads(text))
    assert json.dumps(back.to_dict(), sort_keys=True) == text
    assert isinstance(back.gains[0].gain, Comparison) and isinstance(back.recommendation.placement, Placement)
    assert isinstance(back.design, Design) and back.schema == SCHEMA_VERSION
    assert back.gain(a.gains[0].label, a.gains[0].n_train).verdict == a.gains[0].verdict


def test_an_epoch_budget_study_and_a_newer_one_are_refused(tmp_path):
    for old in (1, 2):  # trained on epoch budgets: not mixed with step budgets
        with pytest.raises(UserError, match="epoch budgets.*new --out folder"):
            check_schema({"schema": old}, "x")
    with pytest.raises(UserError, match="validation examples that had chosen.*new --out folder"):
        check_schema({"schema": 3}, "x")  # chose and ranked on one validation split
    assert check_schema({"schema": SCHEMA_VERSION}, "x")["schema"] == SCHEMA_VERSION
    (tmp_path / "study.json").write_text(json.dumps({"schema": SCHEMA_VERSION + 1}))
    with pytest.raises(UserError, match="another transferlab version.*upgrade transferlab"):
        read_study(tmp_path)
    (tmp_path / "study.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_study(tmp_path)


def test_the_report_renders_from_the_json_files_without_torch(tmp_path):
    _, study = _analysis()
    (tmp_path / "study.json").write_text(json.dumps({**study, "schema": SCHEMA_VERSION, "config": {"halving": True}}))
    (tmp_path / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _study_records(np.random.default_rng(0))))
    code = textwrap.dedent(f"""
        import sys

        class NoTorch:  # any import of torch now fails
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is not installed here")

        sys.meta_path.insert(0, NoTorch())
        from transferlab.report.html import write_report
        from transferlab.results import StudyResult
        path = write_report({str(tmp_path)!r})
        result = StudyResult.load({str(tmp_path)!r})
        print(type(result.analysis).__name__, path.stat().st_size > 1000)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["Analysis", "True"]
    html = (tmp_path / "report.html").read_text()
    assert 'id="recommendation"' in html and "the same 5 seeds" in html
