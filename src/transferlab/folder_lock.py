"""One writer per study folder.

Two processes on one folder (the same command in two terminals, a scheduler retrying a job) would both append to
``trials.jsonl`` and run the same trials twice. A study therefore holds an OS lock on ``FOLDER/.transferlab-lock``
while it runs (the file is removed when it ends). It is a ``flock``: the kernel drops it when the process ends, SIGKILL included, so a crashed run
never leaves a stale lock for the next one to clean up. The file itself only says who holds it.
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from transferlab.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; the study runs unlocked
    fcntl = None

LOCK_NAME = ".transferlab-lock"


def check_folder_path(folder: Path) -> None:
    """A study folder must be a folder (or not exist yet): refused before anything is read or written."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder} is a file, not a folder", "give a folder for the study (it is created when missing)")
    parent = next((p for p in folder.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UserError(f"--out {folder} lies under {parent}, which is a file", "give a folder path whose parents are folders")


def _results(folder: Path) -> list[Path]:
    """Files a failed run must keep: anything but the lock and the feature cache (recomputable)."""
    return [p for p in folder.rglob("*") if p.is_file() and p.name != LOCK_NAME and "cache" not in p.relative_to(folder).parts]


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


def _make(folder: Path, made: list[Path]) -> None:
    """Create ``folder`` and its missing parents, adding each one this call creates to ``made`` (outermost first) as
    it goes, so a failure half-way still knows what to remove.  A folder another process made first (two jobs into
    runs/a and runs/b, runs/ absent) is not added, so it is never removed here."""
    for p in [*reversed(folder.parents), folder]:
        if p.exists():
            continue
        try:
            os.mkdir(p)
        except FileExistsError:
            continue
        except FileNotFoundError:  # a sibling's failed start removed a parent just now: make them again
            return _make(folder, made)
        made.append(p)


def _acquire(folder: Path, wait: bool, on_wait: Callable[[str], None] | None, made: list[Path]) -> int:
    path = folder / LOCK_NAME
    while True:
        _make(folder, made)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a failed start removed the folder between the two calls: make it again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                os.close(fd)
                raise UserError(f"{folder} is in use by {holder}",
                                "wait for it to finish (add --wait to start when it does), or give another --out") from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # the holder may have removed the file (a failed start cleans up the folder it made): lock the new one
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()}, started {time.strftime('%H:%M:%S')}: "
                         f"{' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))}\n".encode())
            return fd
        os.close(fd)


def _unmake(folder: Path, made: list[Path]) -> None:
    """Remove what a failed start made: the study folder if this call made it and it holds no result (while the lock
    is held no other process writes there), then the parents it made, innermost first, each only while empty."""
    if folder in made and not _results(folder):
        shutil.rmtree(folder, ignore_errors=True)
    for p in reversed([p for p in made if p != folder]):
        try:
            p.rmdir()  # fails on a folder that is not empty (another study now lives there): stop
        except OSError:
            return


@contextmanager
def study_lock(folder: str | Path | None, wait: bool = False,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``folder`` for the duration of the block. If the block fails before writing a result, the folders this
    call made are removed again, bottom-up: the study folder (it holds only this run's lock and cache), then each
    parent it made while it is empty; so a refused start leaves nothing behind and touches nothing of another's.

    ``wait``: if another process holds it, wait for that process (``on_wait`` is told who) instead of refusing.
    """
    if folder is None:
        yield
        return
    folder = Path(folder)
    check_folder_path(folder)
    if fcntl is None:  # pragma: no cover
        yield
        return
    made: list[Path] = []  # the folders this call creates (for --out new/a/b: those of new, a, b that did not exist)
    try:
        fd = _acquire(folder, wait, on_wait, made)
    except BaseException:  # a parent made, then a folder below it refused (read-only): remove what was made
        _unmake(folder, made)
        raise
    try:
        yield
    except BaseException:
        _unmake(folder, made)
        raise
    finally:
        # The file goes while the lock is still held, so a folder holds one only while a study runs; a process
        # waiting on the old file finds it gone and locks a new one (_acquire). Closing releases the flock.
        (folder / LOCK_NAME).unlink(missing_ok=True)
        os.close(fd)
