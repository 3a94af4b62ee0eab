"""The speed machinery must not change results: cache budget and files, worker processes, Ray, resume after SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import transferlab as tl
from tests.conftest import prepared
from transferlab.cache import FeatureCache
from transferlab.results import TrialSpec
from transferlab.trial import run_trial

SMALL = dict(seeds=[0, 1], sizes=[5], budget=tl.Budget(epochs=3, patience=2, lrs=(3e-3, 1e-2)),
             strategies=[{"name": "scratch"}, {"name": "head"}, {"name": "freeze_k", "params": {"k": 2}},
                         {"name": "linear_probe"}])


def _acc(result):
    return {t["trial_id"]: t["test_acc"] for t in result.trials}


def test_cache_respects_its_memory_budget_and_files_are_reused(cnn, digits, tmp_path):
    data = prepared(cnn, digits)
    sizes = FeatureCache().row_bytes(cnn, "key", data.train)
    rows = len(data.train)
    budget = rows * (sizes[2] + sizes[3]) + 1  # cuts 2 and 3 fit together; cut 1 is larger than the budget
    assert rows * sizes[1] > budget
    cache = FeatureCache(memory_budget=budget, disk_dir=tmp_path / "c")
    cache.want([1, 2, 3])
    assert not cache.holds(cnn, "key", data.train, 1) and cache.holds(cnn, "key", data.train, 2)
    for k in (2, 3):
        got = cache.states(cnn, "key", "train", data.train, k).inputs
        with torch.no_grad():
            torch.testing.assert_close(got, cnn.eval().features(data.train.inputs, k), rtol=1e-5, atol=1e-6)
        assert cache.memory_bytes <= budget
    assert cache.passes == 1, "one pass yields every wanted cut that fits beside the asked one"
    cache.states(cnn, "key", "val", data.val, 2)
    cache.states(cnn, "key", "test", data.val, 2)
    assert cache.memory_bytes <= budget and any((tmp_path / "c").glob("*.npy")), "beyond the budget: files"
    again = FeatureCache(memory_budget=budget, disk_dir=tmp_path / "c")
    again.states(cnn, "key", "val", data.val, 2)  # written when memory was full
    assert again.passes == 0 and again.disk_loads == 1, "a rerun maps the files instead of recomputing"
    other = cnn.clone()
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    assert other.fingerprint() != cnn.fingerprint(), "changed weights give a new cache key"


def test_a_split_is_cached_batch_by_batch_into_its_file_or_its_tensor(cnn, digits, tmp_path):
    """Each cut is written in order as the batches come (a file per cut, or one tensor in memory), never held twice:
    the entry equals the features of the whole split at once, on disk and in memory, with no partial file left."""
    data = prepared(cnn, digits)
    with torch.no_grad():
        whole = {k: cnn.eval().features(data.train.inputs, k) for k in (1, 2, 3)}
    for disk in (True, False):
        cache = FeatureCache(batch_size=7, disk_dir=tmp_path / "c" if disk else None, persist=disk)  # many batches
        cache.want([1, 2, 3])
        for k in (1, 2, 3):
            got = cache.states(cnn, "key", "train", data.train, k).inputs
            torch.testing.assert_close(got, whole[k], rtol=1e-5, atol=1e-6)
        assert cache.passes == 1
        assert (cache.memory_bytes == 0) is disk and cache._pending == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(
        [f"key-train-cut{k}-{i}.npy" for k in (1, 2, 3) for i in (0,)] + [f"key-train-cut{k}-meta.txt" for k in (1, 2, 3)])
    again = FeatureCache(disk_dir=tmp_path / "c")
    torch.testing.assert_close(again.states(cnn, "key", "train", data.train, 2).inputs, whole[2], rtol=1e-5, atol=1e-6)
    assert again.passes == 0 and again.disk_loads == 1


def test_augmented_views_are_cached_only_at_the_cuts_the_trials_read(cnn, digits, tmp_path):
    """Each augmented view is a pass over the whole training pool, and only frozen trials read them: a study of
    scratch, head (the last cut) and freeze_k(k=1) caches the views at cuts 1 and 3, not at cut 2."""
    import re

    cfg = tl.StudyConfig(strategies=["scratch", "head", {"name": "freeze_k", "params": {"k": 1}}], sizes=[5],
                         seeds=[0], augment="crop,flip", augment_views=2, estimate=False,
                         budget=tl.Budget(steps=20, patience=2, lrs=(3e-3,)))
    tl.run_study(cnn, digits, cfg, tmp_path / "s", report=False)
    files = [f.name for f in (tmp_path / "s" / "cache").glob("*.npy")]
    views = {int(m.group(1)) for f in files if (m := re.search(r"-train-crop-flip-.*-cut(\d+)-", f))}
    plain = {int(m.group(1)) for f in files if (m := re.search(r"-train-cut(\d+)-", f))}
    assert views == {1, 3}
    assert plain == {1, 3}, "the pool is cached at the cuts the trials read; the profile streams cut 2 on its rows"


def test_fp16_cache_is_close_not_exact(cnn, digits, tmp_path):
    data = prepared(cnn, digits)
    c16 = FeatureCache(disk_dir=tmp_path, fp16=True, persist=True)
    x16 = c16.states(cnn, "k", "val", data.val, 3).inputs
    x32 = FeatureCache().states(cnn, "k", "val", data.val, 3).inputs
    assert x16.dtype == torch.float32
    torch.testing.assert_close(x16, x32, rtol=2e-3, atol=2e-3)


def _inline_one_thread(cnn, digits, out):
    """Workers use 1 torch thread each; float sums depend on the thread count, so the reference does too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return tl.run_study(cnn, digits, tl.StudyConfig(**SMALL), out, report=False)
    finally:
        torch.set_num_threads(threads)


def test_worker_processes_give_the_same_results(cnn, digits, tmp_path):
    inline = _inline_one_thread(cnn, digits, tmp_path / "a")
    pooled = tl.run_study(cnn, digits, tl.StudyConfig(**SMALL, workers=2, executor="process"), tmp_path / "b", report=False)
    assert _acc(inline) == pytest.approx(_acc(pooled), abs=1e-9)
    assert any((tmp_path / "b" / "cache").glob("*.npy")), "workers shared the cache files"


def test_one_pool_of_workers_serves_every_round(cnn, digits, tmp_path, monkeypatch):
    """A sequential study's rounds share their worker processes (starting them cost about 4 s a round on the demo),
    and the records are those of the inline run."""
    from transferlab import executors

    made = []

    class Counted(executors.cf.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            made.append(self)
            super().__init__(*args, **kwargs)

    sequential = {**SMALL, "seeds": None, "max_seeds": 24, "strategies": SMALL["strategies"][:2]}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inline = tl.run_study(cnn, digits, tl.StudyConfig(**sequential), tmp_path / "a", report=False)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(executors.cf, "ProcessPoolExecutor", Counted)
    pooled = tl.run_study(cnn, digits, tl.StudyConfig(**sequential, workers=2, executor="process"), tmp_path / "b",
                          report=False)
    assert len(pooled.study["rounds"]) >= 2 and len(made) == 1
    assert _acc(inline) == pytest.approx(_acc(pooled), abs=1e-9)


@pytest.mark.slow  # a long end-to-end run: in the slow suite, which CI runs too
def test_ray_executor_on_a_local_instance(cnn, digits, tmp_path):
    pytest.importorskip("ray")
    inline = _inline_one_thread(cnn, digits, None)
    ray_run = tl.run_study(cnn, digits, tl.StudyConfig(**SMALL, workers=2, executor="ray"), tmp_path / "r", report=False)
    assert _acc(inline) == pytest.approx(_acc(ray_run), abs=1e-9)


def test_diverging_trial_is_recorded_and_the_study_goes_on(mlp, digits):
    cfg = tl.StudyConfig(seeds=[0], sizes=[5], budget=tl.Budget(epochs=3, lrs=(1e6,)),
                         strategies=[{"name": "finetune", "params": {"body_lr_mult": 1.0}}, {"name": "linear_probe"}])
    res = tl.run_study(mlp, digits, cfg)
    status = {t["strategy"]: t for t in res.trials}
    assert status["finetune"]["status"] == "diverged" and status["finetune"]["diverged_step"] >= 1
    assert status["linear_probe"]["status"] == "ok"


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    args = ["run", "--model", "demo:cnn", "--data", "demo:digits", "--seeds", "2", "--sizes", "5,20", "--epochs", "4",
            "--strategies", "scratch,finetune,head,lp_ft"]
    exe = [sys.executable, "-m", "transferlab.cli.app"]
    full = subprocess.run([*exe, *args, "--out", str(tmp_path / "full")], capture_output=True, text=True)
    assert full.returncode == 0, full.stderr[-2000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*exe, *args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = out / "trials.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if store.exists() and len(store.read_bytes().splitlines()) >= 5:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(store.read_bytes().splitlines())
    assert 0 < n_before < 16, "killed part-way"
    again = subprocess.run([*exe, *args, "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    load = lambda p: {r["trial_id"]: r["test_acc"] for r in map(json.loads, (p / "trials.jsonl").read_text().splitlines())}  # noqa: E731
    assert load(out) == load(tmp_path / "full")
