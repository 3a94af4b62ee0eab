"""Threads: worker processes x intra-op threads never exceed the cores this process may use.

Torch starts as many intra-op threads as the machine has cores, whatever the CPU affinity mask says and
however many other torch processes run. Two such processes on 2 cores spin-wait on each other's cores and
run 10-100x slower. So a study uses the cores of its affinity mask (capped by ``OMP_NUM_THREADS`` when set),
divides them among its workers, and the CLI asks OpenMP to sleep rather than spin when it waits
(``OMP_WAIT_POLICY=PASSIVE``, unless set), so a second study on the same cores slows both by 2x, not 10x.
"""
from __future__ import annotations

import contextlib
import functools
import os

SMALL_MODEL = 2_000_000  # parameters: below this a trial is bound by per-op overhead, not by arithmetic


def usable_cores() -> int:
    """Cores in this process's affinity mask, capped by ``OMP_NUM_THREADS`` when it is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        n = os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)


def threads_per_worker(workers: int) -> int:
    return max(1, usable_cores() // max(1, workers))


def auto_workers(n_params: int, device: str = "cpu") -> int:
    """``--workers auto``: on CPU, a small model's trials run one per core with one thread each (its ops are
    too small to split across threads, so trials in parallel finish sooner); a large model's run one at a time
    on every core. On a GPU, one worker (trials share the device)."""
    if str(device).startswith(("cuda", "mps")) or n_params >= SMALL_MODEL:
        return 1
    return min(usable_cores(), 4)


def threads_for(n_params: int, workers: int = 1) -> int:
    """Intra-op threads of one trial process: a small model's ops are too small to split (one thread ran the
    3-epoch demo in 35 s, two threads in 41 s on 2 cores); a large model's get the process's share of the cores."""
    return 1 if n_params < SMALL_MODEL else threads_per_worker(workers)


def limit_threads(n: int) -> int:
    """Set this process's intra-op threads to ``n``; returns the previous count."""
    import torch

    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    return before


@contextlib.contextmanager
def restored_threads():
    """A study sets the threads it needs; the caller's setting is back when it returns."""
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def keeps_threads(fn):
    """Decorator: ``fn`` runs inside ``restored_threads``."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with restored_threads():
            return fn(*args, **kwargs)
    return wrapper


def quiet_waiting() -> None:
    """Before torch loads OpenMP: waiting threads sleep instead of spinning (the user's setting wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
