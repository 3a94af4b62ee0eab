"""The worker pool a study keeps between its rounds (no process is started: a pool spawns on first use)."""
from __future__ import annotations


def test_a_worker_pool_is_kept_only_for_the_same_study_and_cuts_it_wants():
    from types import SimpleNamespace

    from transferlab.executors import WorkerPool

    model, data, config = object(), object(), SimpleNamespace(workers=2)
    init = lambda cuts, **kw: (kw.get("model", model), "key", kw.get("data", data), config, "cpu", None, 1, cuts)  # noqa: E731
    pool = WorkerPool()
    try:
        first = pool.get(2, init({1, 3}))
        assert pool.get(2, init({3})) is first, "a later round reads fewer cuts: the same workers"
        assert pool.get(2, init({1, 3})) is first
        wider = pool.get(2, init({1, 2, 3}))
        assert wider is not first, "a cut the workers do not want: new workers"
        assert pool.get(2, init({1, 2, 3}, data=object())) is not wider, "other data: new workers"
        broken = pool.get(2, init({1}))
        broken._broken = "a worker died between rounds"  # as concurrent.futures marks a pool a dead worker broke
        again = pool.get(2, init({1}))
        assert again is not broken, "a broken pool: new workers"
        pool.close()
        assert pool.get(2, init({1})) is not again, "closed: new workers"
    finally:
        pool.close()
