"""A bare path is read as what it holds: image folders, tables, text, arrays; the SCHEME: form still works."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SHARED_DATA, cli
from transferlab.errors import UserError
from transferlab.sources.detect import data_scheme


def _images(root, classes=("a", "b"), per_class=12, size=8):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for j in range(per_class):
            px = (rng.random((size, size)) * 80 + 120 * i).astype(np.uint8)
            Image.fromarray(px).save(root / c / f"{j}.png")
    return root


def test_each_kind_of_path_is_recognised(tmp_path):
    assert data_scheme(str(_images(tmp_path / "photos"))) == "images"
    pd.DataFrame({"x1": range(10), "x2": np.arange(10) * 0.5, "colour": ["red", "blue"] * 5,
                  "label": [0, 1] * 5}).to_csv(tmp_path / "t.csv", index=False)
    assert data_scheme(str(tmp_path / "t.csv")) == "table"
    pd.DataFrame({"text": [f"this phone is really {w} indeed" for w in ["good", "bad"] * 5], "label": [1, 0] * 5}).to_csv(
        tmp_path / "s.tsv", sep="\t", index=False)
    assert data_scheme(str(tmp_path / "s.tsv")) == "text"
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"text": "so good", "label": 1}) + "\n" for _ in range(4)))
    assert data_scheme(str(tmp_path / "s.jsonl")) == "text"
    pd.DataFrame({"path": [f"photos/a/{j}.png" for j in range(10)], "label": ["a"] * 10}).to_csv(tmp_path / "p.csv", index=False)
    assert data_scheme(str(tmp_path / "p.csv")) == "images"
    np.savez(tmp_path / "a.npz", X=np.zeros((4, 3)), y=np.arange(4))
    assert data_scheme(str(tmp_path / "a.npz")) == "npz"


def test_what_cannot_be_told_apart_is_refused_with_the_forms_to_use(tmp_path):
    pd.DataFrame({"review": ["a long and winding sentence here"] * 6, "reply": ["another long answer to it"] * 6,
                  "stars": range(6), "price": range(6), "label": [0, 1] * 3}).to_csv(tmp_path / "mix.csv", index=False)
    with pytest.raises(UserError, match="text or a table") as err:
        data_scheme(str(tmp_path / "mix.csv"))
    assert "text:" in err.value.fix and "table:" in err.value.fix
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="without images"):
        data_scheme(str(tmp_path / "empty"))
    (tmp_path / "x.bin").write_bytes(b"\0")
    with pytest.raises(UserError, match="cannot tell how to read"):
        data_scheme(str(tmp_path / "x.bin"))


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is not present")
def test_the_real_digit_sets_and_sentences_are_recognised():
    assert data_scheme(str(SHARED_DATA / "mnist")) == "mnist"
    assert data_scheme(str(SHARED_DATA / "usps")) == "usps"
    assert data_scheme(str(SHARED_DATA / "sentiment_labelled_sentences" / "yelp_labelled.txt")) == "text"


def test_a_bare_folder_runs_a_study_and_a_missing_one_is_one_line(tmp_path):
    photos = _images(tmp_path / "photos", per_class=15)
    res = cli("run", "--model", "demo:cnn", "--data", str(photos), "--seeds", "1", "--sizes", "5", "--epochs", "1",
              "--strategies", "scratch,head", "--augment", "none", "--out", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr[-2000:]
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert study["data"]["class_names"] == ["a", "b"]
    res = cli("run", "--model", "demo:cnn", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "t"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr
