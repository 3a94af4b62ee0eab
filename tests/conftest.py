"""Shared tiny fixtures with fixed seeds. The demo models pretrain into a per-session cache."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    os.environ["TRANSFERLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def cnn():
    from transferlab import zoo

    return zoo.pretrained("cnn")


@pytest.fixture(scope="session")
def mlp():
    from transferlab import zoo

    return zoo.pretrained("mlp")


@pytest.fixture()
def digits():
    from transferlab.data.builtin import digits_target

    return digits_target()


@pytest.fixture()
def tiny_budget():
    from transferlab.training import Budget

    return Budget(epochs=3, patience=2, batch_size=16, lrs=(3e-3, 1e-2))


def prepared(backbone, data):
    from transferlab.pipeline import prepare

    return prepare(data, backbone)


def invoke(*args, env=None, cwd=None) -> tuple[int, str, str]:
    """Run the CLI's ``main`` in this process: (exit status, stdout, stderr). Much faster than ``cli`` (torch is
    imported once), for the bad-input corpus and the property test. An exception the CLI does not turn into an
    exit status propagates, so a traceback fails the test that provoked it."""
    import contextlib
    import io

    from transferlab.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        if cwd is not None:
            mp.chdir(cwd)
        mp.setattr(sys, "argv", ["transferlab", *map(str, args)])
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def cli(*args, env=None, cwd=None):
    """Run the installed CLI in a subprocess; returns CompletedProcess.

    No time limit: a slow or busy machine must not fail a test (speed is measured in benchmarks/)."""
    exe = shutil.which("transferlab") or sys.executable
    cmd = [exe, *args] if exe.endswith("transferlab") else [exe, "-m", "transferlab.cli.app", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd)
