"""The README's examples run as written.

Every command of every bash block runs in a folder that holds the files the README names (an image folder,
tables, texts, weight files of real timm and torchvision architectures, a package of the reader's own nets),
each study file block is written as the file it stands for, and the complete Python example runs.
- `transferlab run` and `layers` get `--dry-run`: every check, the data and model loading and the cost
  estimate run, and no training (the rest of the suite trains). The `--save-best` command gets a small
  budget instead, so the `predict` after it has a model to read.
- Left out, each with its reason: the set-up block (.ci/run is that block), `pip install`, a server, and a
  command that downloads weights. Commands reading ../shared/data are skipped when it is absent.
- `transferlab report DIR` reads a finished study: the complete Python example's, which runs first.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SHARED_DATA

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP = {  # a command's first words (or a fragment in it) -> why it does not run here
    "pip install": "installs packages (CI installs the test extra)",
    "mlflow ui": "starts a server",
    "IMAGENET1K_V1": "downloads ImageNet weights",
}
SMALL = ["--seeds", "1", "--sizes", "2", "--strategies", "head", "--epochs", "1", "--augment", "none"]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(), re.S)


def commands(block: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _nets_module() -> str:
    return '''import torch
from torch import nn


class TabNet(nn.Module):
    def __init__(self, n_in, n_classes=2):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
        self.fc = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.fc(self.body(x))


class MnistNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.conv2(self.conv1(x)))
'''


def _images(folder: Path, classes: list[str] | None, n: int, rng) -> None:
    from PIL import Image

    for c, name in enumerate(classes or [None]):
        where = folder / name if name else folder
        where.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = np.array([200, 40, 40]) if c == 0 else np.array([40, 40, 200])
            pixels = np.clip(base + rng.normal(0, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(where / f"{i}.png")


def _bert(folder: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = "good bad great awful fine poor food service place the was is".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(folder)


def make_world(root: Path) -> Path:
    """The files the README's commands name, small and real."""
    import timm
    import torch
    import torchvision
    from safetensors.torch import save_file
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(0)
    world = root / "world"
    world.mkdir()
    if SHARED_DATA.exists():
        (root / "shared").symlink_to(SHARED_DATA.parent)
    _images(world / "photos", ["cat", "dog"], 104, rng)  # 50 per class in the training pool: the default sizes fit
    _images(world / "new_photos", None, 4, rng)
    n = 240  # 50+ per class in the training pool: the default sizes fit
    churned = rng.integers(0, 2, n)
    (world / "customers.csv").write_text("age,income,tenure,visits,plan,churned\n" + "".join(
        f"{30 + 10 * c + rng.integers(0, 8)},{40 + rng.normal():.2f},{rng.integers(1, 9)},{rng.integers(0, 5)},"
        f"{'ab'[c]},{['no', 'yes'][c]}\n" for c in churned))
    texts = {0: ["the food was awful", "poor service", "bad place"], 1: ["great food", "good service", "fine place"]}
    rows = [(texts[c][i % 3] + f" {i}", c) for i in range(240) for c in (i % 2,)]  # 50+ per class in the pool
    (world / "reviews.csv").write_text("text,label\n" + "".join(f"{t},{c}\n" for t, c in rows))
    (world / "reviews.jsonl").write_text("".join(json.dumps({"body": t, "label": c}) + "\n" for t, c in rows))
    (world / "sms.tsv").write_text("".join(f"{['ham', 'spam'][c]}\t{t}\n" for t, c in rows))
    d = load_digits()
    keep = (d.target == 5) | (d.target == 6)  # two classes: 50+ per class in the pool after subsample=500
    np.savez(world / "target.npz", X=(d.images[keep] / 16.0).astype("float32")[:, None], y=d.target[keep] - 5)
    for name, model in (("r18", timm.create_model("resnet18")), ("resnet18", timm.create_model("resnet18")),
                        ("r50", timm.create_model("resnet50")),
                        ("mnist_r10t", timm.create_model("resnet10t", in_chans=1))):
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(world / f"{name}.safetensors"))
    torch.save(torchvision.models.resnet18().state_dict(), world / "resnet18.pth")
    (world / "mypkg").mkdir()
    (world / "mypkg" / "__init__.py").write_text("")
    (world / "mypkg" / "nets.py").write_text(_nets_module())
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_nets", world / "mypkg" / "nets.py")
    nets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nets)
    torch.save(nets.TabNet(6).state_dict(), world / "tabnet.pt")
    torch.save(nets.MnistNet().state_dict(), world / "mnist.pt")
    torch.save(nets.Net().state_dict(), world / "our_d1_model.pt")
    _bert(world / "bert")
    toml = blocks("toml")
    (world / "study.toml").write_text(toml[0])
    (world / "models.toml").write_text(toml[1])
    return world


def _invoke(line: str, world: Path):
    from typer.testing import CliRunner

    from transferlab.cli.app import app

    words = shlex.split(line.replace("/path/to/local/bert", str(world / "bert")), comments=True)
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[0] == "transferlab", line
    args = words[1:]
    if args[0] in ("run", "layers"):
        args += [*SMALL, "--out", "save-best-study"] if "--save-best" in args else ["--dry-run"]
    return CliRunner().invoke(app, args, env=env, catch_exceptions=True)


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path, monkeypatch):
    world = make_world(tmp_path)
    monkeypatch.syspath_prepend(str(world))  # `torch:mypkg.nets:...` imports the reader's package from here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    py = tmp_path / "py"
    py.mkdir()
    monkeypatch.chdir(py)
    namespace: dict = {}
    exec(compile(blocks("python")[0], "README.md", "exec"), namespace)  # the complete Python example: a real study
    assert (py / "my-study" / "analysis.json").exists() and len(namespace["df"]) == 18
    monkeypatch.chdir(world)
    ran, skipped = [], []
    for block in blocks("bash")[1:]:  # [0] is the set-up and test command: .ci/run runs exactly that
        for line in commands(block):
            reason = next((why for key, why in SKIP.items() if key in line), None)
            if reason is None and "../shared" in line and not SHARED_DATA.exists():
                reason = "../shared/data is absent"
            if reason:
                skipped.append((line, reason))
                continue
            if line.startswith("transferlab report ") and not (world / line.split()[2]).exists():
                shutil.copytree(py / "my-study", world / line.split()[2])  # a finished study: the Python example's
            res = _invoke(line, world)
            assert res.exit_code == 0, f"{line}\n{res.output}\n{res.exception!r}"
            ran.append(line)
    assert (world / "predictions.csv").read_text().count("\n") == 1 + 4  # four new photos, one row each
    # three left out for their own reasons (set-up, a server, a download); the rest only without ../shared/data
    assert len(ran) >= 20 and sum(1 for _, why in skipped if why != "../shared/data is absent") == 3, skipped
    assert not os.path.exists(world / "which-model")  # dry runs write nothing
