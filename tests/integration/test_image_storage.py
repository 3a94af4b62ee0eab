"""Images held as bytes or read from their files: the model reads the same floats, a study gets the same
numbers, and nothing holds a float copy of the folder."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import prepared
from transferlab.data.imagestore import DecodedImages, ImageFiles, batches
from transferlab.data.images import image_target


@pytest.fixture()
def photos(tmp_path):
    from PIL import Image

    root, rng = tmp_path / "photos", np.random.default_rng(0)
    for i, c in enumerate("abc"):  # three brightness levels, so the classes can be learnt
        (root / c).mkdir(parents=True)
        for j in range(14):
            Image.fromarray((rng.random((10, 10)) * 60 + 85 * i).astype(np.uint8)).save(root / c / f"{j}.png")
    (root / "a" / "broken.png").write_bytes(b"not a png")  # skipped and counted, in both storages
    return root


def _load(photos, storage, **kw):
    return image_target(str(photos), size=(8, 8), channels=1, augment="none", storage=storage, **kw)


def test_bytes_and_files_give_the_model_the_same_floats(photos):
    from PIL import Image

    mem, files = _load(photos, "memory"), _load(photos, "stream")
    assert isinstance(mem.train.inputs, DecodedImages) and isinstance(files.train.inputs, ImageFiles)
    assert mem.split_info["skipped_files"] == files.split_info["skipped_files"] == 1
    for a, b in ((mem.train, files.train), (mem.val, files.val), (mem.test.open("t"), files.test.open("t"))):
        assert torch.equal(a.y, b.y)
        assert torch.equal(a.inputs[:], b.inputs[:])
    # what the model reads is Pillow's pixels / 255, as a float tensor would hold them
    first = files.train.inputs.paths[files.train.inputs.index[0]]
    with Image.open(first) as im:
        expected = np.asarray(im.convert("L").resize((8, 8), Image.BILINEAR), dtype=np.float32) / 255
    assert torch.allclose(mem.train.inputs[0][0], torch.from_numpy(expected))


def test_splits_and_subsets_share_the_bytes(photos):
    data = _load(photos, "memory")
    pixels = data.train.inputs.pixels
    assert pixels.dtype == torch.uint8
    sub = data.train.subset(torch.arange(5))
    assert sub.inputs.pixels is pixels and data.val.inputs.pixels is pixels, "a split or subset copied the images"
    assert torch.equal(sub.inputs[:], data.train.inputs[torch.arange(5)])


def test_normalisation_is_applied_per_batch_as_on_floats(photos, cnn):
    data = _load(photos, "memory")
    pre = prepared(cnn, data)
    floats = data.train.inputs[:]
    mean, std = cnn.preprocessing.mean, cnn.preprocessing.std
    assert mean is not None
    torch.testing.assert_close(pre.train.inputs[:], cnn.preprocessing.apply(floats))
    assert pre.train.inputs.norm == (tuple(mean), tuple(std))


def test_read_ahead_workers_give_the_batches_in_order(photos, monkeypatch):
    import transferlab.data.imagestore as store

    monkeypatch.setattr(store, "loader_workers", lambda: 2)
    files = _load(photos, "stream").train.inputs
    chunks = list(torch.randperm(len(files), generator=torch.Generator().manual_seed(0)).split(5))
    ahead = list(batches(files, chunks))
    assert len(ahead) == len(chunks)
    for c, x in zip(chunks, ahead):
        assert torch.equal(x, files[c])


def test_auto_streams_beyond_the_memory_limit(photos, monkeypatch):
    import transferlab.data.imagestore as store

    assert _load(photos, "auto").split_info["storage"] == "memory"
    monkeypatch.setattr(store, "MEMORY_LIMIT", 100)
    assert _load(photos, "auto").split_info["storage"] == "stream"


def test_a_study_gets_the_same_numbers_from_bytes_and_from_files(photos, cnn):
    from transferlab import StudyConfig, run_study
    from transferlab.training import Budget

    config = StudyConfig(strategies=["scratch", {"name": "freeze_k", "k": 2}, "linear_probe"], seeds=[0], sizes=[6],
                         budget=Budget(epochs=2, patience=2, batch_size=8, lrs=(1e-2,)), augment="crop,flip",
                         augment_views=2, profile=False, estimate=False)
    got = {}
    for storage in ("memory", "stream"):
        result = run_study(cnn, _load(photos, storage), config, report=False)
        got[storage] = {t["label"]: t["test_acc"] for t in result.trials}
    assert got["memory"] == got["stream"] and len(got["memory"]) >= 3
    assert max(got["memory"].values()) > 0.5, "nothing learnt: the comparison would be vacuous"


def test_a_cut_too_big_for_the_cache_runs_its_prefix_with_the_same_numbers(cnn, digits, tiny_budget):
    """The cache's budget decides speed, never results: freeze_k with its cut cached equals it uncached."""
    from transferlab.cache import FeatureCache
    from transferlab.results import TrialSpec
    from transferlab.trial import run_trial

    data = prepared(cnn, digits)
    spec = TrialSpec("freeze_k", {"k": 2, "train_bn": False}, 0, 10)
    roomy = FeatureCache()
    cramped = FeatureCache(memory_budget=1000)
    assert not cramped.holds(cnn, "k", data.train, 2)
    a = run_trial(spec, cnn, "k", data, tiny_budget, roomy)
    b = run_trial(spec, cnn, "k", data, tiny_budget, cramped)
    assert roomy.passes >= 1 and cramped.passes == 0 and cramped.memory_bytes == 0
    assert a.test_acc == pytest.approx(b.test_acc, abs=1e-9)
    assert [h["val_loss"] for h in a.history] == pytest.approx([h["val_loss"] for h in b.history], rel=1e-4)


def test_the_profile_pools_batch_by_batch_when_cuts_do_not_fit(cnn, digits):
    from transferlab.cache import FeatureCache
    from transferlab.measurements.profile import profile

    data = prepared(cnn, digits)
    roomy = FeatureCache()
    roomy.want(range(1, cnn.n_blocks + 1))  # as a study that caches every cut
    held = profile(cnn, data, roomy)
    assert roomy.passes >= 1, "the cuts a study caches come from the pool's cached activations"
    small = FeatureCache(memory_budget=1000)
    small.want(range(1, cnn.n_blocks + 1))
    streamed = profile(cnn, data, small)
    assert small.memory_bytes <= 1000 and small.passes == 0, "nothing held beyond the budget"
    for a, b in zip(held["cuts"], streamed["cuts"]):
        assert a["k"] == b["k"] and a["dim"] == b["dim"]
        assert a["knn_acc"] == pytest.approx(b["knn_acc"]) and a["logme"] == pytest.approx(b["logme"], rel=1e-4)


def test_evaluation_batches_shrink_for_large_inputs_only(digits):
    from dataclasses import replace

    from transferlab.data.base import Split
    from transferlab.data.imagestore import DecodedImages
    from transferlab.pipeline import eval_rows
    from transferlab.training import Budget

    assert eval_rows(Budget(), digits) == 512, "8x8 digits keep the configured batch"
    big = DecodedImages(pixels=torch.zeros(4, 3, 224, 224, dtype=torch.uint8))
    rows = eval_rows(Budget(), replace(digits, train=Split(big, torch.zeros(4, dtype=torch.long))))
    assert 16 <= rows < 512 and rows * 3 * 224 * 224 <= 1 << 24
    assert eval_rows(Budget(eval_batch_size=64), digits) == 64
