"""Bad input: one line naming the problem and the fix, exit status 2, no traceback, nothing half-written."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from tests.conftest import cli
from tests.helpers import import_written


def fails(tmp_path, *args, words=(), env=None):
    out = tmp_path / "study-out"
    res = cli(*args, "--out", str(out), env=env)
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = [x for x in res.stderr.splitlines() if x.strip() and not x.startswith("Loading weights")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert not out.exists(), "a failed start must not leave a study folder behind"
    return lines[0]


def image_folder(root, classes=("5", "6"), per_class=12, layout=None):
    d = load_digits()
    for c in classes:
        folder = root / (layout or "") / c
        folder.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(d.images[d.target == int(c)][:per_class]):
            Image.fromarray((img * 15).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    root = image_folder(tmp_path / "imgs", per_class=25)
    (root / "5" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "6" / "notes.txt").write_text("not an image")
    from transferlab.data.images import image_target

    data = image_target(str(root), size=(8, 8), channels=1)
    assert data.split_info["skipped_files"] == 2
    assert len(data.train) + len(data.val) + len(data.test) == 50


def test_weights_that_do_not_match(tmp_path):
    import timm
    from safetensors.torch import save_file

    other = timm.create_model("resnet18", num_classes=5)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    fails(tmp_path, "run", "--model", "timm:resnet10t", "--weights", str(tmp_path / "r18.safetensors"),
          "--data", "demo:digits", words=("do not match", "pair the weights"))


MODULE = textwrap.dedent('''
    from torch import nn
    class Net(nn.Module):
        def __init__(self, n_in=64):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(n_in, 16), nn.ReLU())
            self.fc = nn.Linear(16, 5)
        def forward(self, x):
            return self.fc(self.body(x))
''')


def test_user_weights_with_wrong_shapes_and_pickles(tmp_path):
    (tmp_path / "netmod.py").write_text(MODULE)
    netmod = import_written(tmp_path, "netmod")
    env = {"PYTHONPATH": str(tmp_path)}
    torch.save(netmod.Net(n_in=32).state_dict(), tmp_path / "small.pt")
    fails(tmp_path, "run", "--model", "torch:netmod:Net", "--weights", str(tmp_path / "small.pt"), "--data", "demo:digits",
          words=("do not match", "body.1.weight"), env=env)
    torch.save(netmod.Net(), tmp_path / "pickled.pt")  # the whole module: only a pickle can load it
    fails(tmp_path, "run", "--model", "torch:netmod:Net", "--weights", str(tmp_path / "pickled.pt"), "--data", "demo:digits",
          words=("cannot be loaded safely", "state_dict"), env=env)
