"""One writer per study folder: a second process refuses (naming the first) or waits with --wait; a SIGKILLed run
leaves no stale lock; a refused start leaves no folder."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import cli, invoke
from transferlab.errors import UserError
from transferlab.folder_lock import LOCK_NAME, study_lock

STUDY = ("run", "--model", "demo:cnn", "--data", "demo:digits", "--seeds", "2", "--sizes", "5", "--steps", "300",
         "--budget-opt", "patience=100",
         "--strategies", "scratch,head,finetune", "--augment", "none")


def _start(out, *extra):
    return subprocess.Popen([sys.executable, "-m", "transferlab.cli.app", *STUDY, "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_first_trial(proc, out):
    while not (out / "trials.jsonl").exists() or not (out / "trials.jsonl").read_text().strip():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)


def _ids(out):
    ids = []
    for line in (out / "trials.jsonl").read_text().splitlines():
        try:
            ids.append(json.loads(line)["trial_id"])
        except ValueError:  # a line a killed run left half-written (the store skips it too)
            pass
    return ids


@pytest.mark.slow  # three processes and a real study: with the slow tests, which CI runs too
def test_a_second_process_refuses_or_waits_and_never_interleaves(tmp_path):
    out = tmp_path / "study"
    first = _start(out)
    _wait_for_first_trial(first, out)
    code, _, refused = invoke(*STUDY, "--out", str(out))  # in this process: it starts in a second, not a torch import
    waiting = _start(out, "--wait")  # started mid-run: it must wait, then resume with nothing left to run
    assert first.wait() == 0, first.communicate()[1][-2000:]
    assert code == 2, refused[-2000:]
    lines = [x for x in refused.splitlines() if x.strip()]
    assert len(lines) == 1 and f"process {first.pid}" in lines[0] and "--wait" in lines[0], refused
    _, err = waiting.communicate()
    assert waiting.returncode == 0, err[-2000:]
    ids = _ids(out)
    assert len(ids) == len(set(ids)), "two processes interleaved their trials"
    assert "waiting for it to finish" in err and "already done" in err


@pytest.mark.slow
def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "study"
    proc = _start(out)
    _wait_for_first_trial(proc, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _ids(out)
    res = cli(*STUDY, "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming" in res.stderr  # the trials the killed run finished are kept
    assert len(_ids(out)) == len(set(_ids(out)))


def test_the_lock_in_one_process(tmp_path):
    folder = tmp_path / "s"
    with study_lock(folder):
        assert (folder / LOCK_NAME).exists() and str(os.getpid()) in (folder / LOCK_NAME).read_text()
        with pytest.raises(UserError, match="is in use by process"):
            with study_lock(folder):
                pass
    with study_lock(folder):  # released on exit, and the file removed: a finished study leaves no lock file
        pass
    assert not (folder / LOCK_NAME).exists()
    # a start that fails before writing anything removes the folder it made, and only that
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        with study_lock(fresh):
            raise RuntimeError("refused")
    assert not fresh.exists()
    with pytest.raises(RuntimeError):
        with study_lock(folder):
            raise RuntimeError("refused")
    assert folder.exists()


def test_a_failed_start_never_removes_a_sibling_study(tmp_path, monkeypatch):
    """Two jobs into runs/a and runs/b with runs/ absent: only the first makes runs/. When b fails in preflight it
    removes runs/b alone, and a's lock, cache and folder stay; when a then fails, runs/ goes only once it is empty."""
    from pathlib import Path

    runs = tmp_path / "runs"
    with study_lock(runs / "a"):
        (runs / "a" / "cache").mkdir()
        (runs / "a" / "cache" / "x.npy").write_bytes(b"a's cache")
        real, seen = Path.exists, []

        def racing(p):  # b looks for runs/ just before a makes it: runs/ reads absent to b
            if p == runs:
                seen.append(p)
                return False
            return real(p)

        monkeypatch.setattr(Path, "exists", racing)
        with pytest.raises(RuntimeError):
            with study_lock(runs / "b"):
                (runs / "b" / "cache").mkdir()
                raise RuntimeError("b refused")
        monkeypatch.undo()
        assert seen and not (runs / "b").exists()
        assert (runs / "a" / LOCK_NAME).exists() and (runs / "a" / "cache" / "x.npy").exists()
        with pytest.raises(UserError, match="is in use"):  # a is still locked: no third process can take it
            with study_lock(runs / "a"):
                pass
    assert (runs / "a" / "cache" / "x.npy").exists()  # a ended normally: its folder stays
    deep = tmp_path / "new" / "x" / "y"
    with study_lock(tmp_path / "new" / "keep"):
        with pytest.raises(RuntimeError):
            with study_lock(deep):
                raise RuntimeError("refused")
        assert not (tmp_path / "new" / "x").exists() and (tmp_path / "new" / "keep").exists()
