"""Where trials run: inline, in a pool of worker processes, or as Ray tasks.

Trials are independent; a unit of work is one trial or, when members train batched, the seeds of one
configuration and size (``seed_groups``), which train as one cohort.  Workers share the frozen-feature cache
through its memory-mapped files: the main process computes the cuts the trials read (of the training pool, its
augmented views and validation) once, before any worker starts, and the workers map them.  Torch threads per worker are set so the workers do not
oversubscribe the cores.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import tempfile
from pathlib import Path

import torch

from transferlab.cache import FeatureCache
from transferlab.errors import UserError
from transferlab.results import TrialSpec
from transferlab.members import batch_mode
from transferlab.strategies.base import planned_cuts
from transferlab.trial import run_seeds



def make_cache(config, device, disk_dir: Path | None) -> FeatureCache | None:
    if not config.cache:
        return None
    return FeatureCache(config.budget.eval_batch_size, device, config.cache_memory_mb << 20, disk_dir,
                        fp16=config.cache_fp16, persist=disk_dir is not None)


def warm(cache: FeatureCache | None, pretrained, key: str, data, cuts: set[int]) -> None:
    """The trials' frozen cuts (``cuts``) of every split they read, computed once and written for the workers: one
    pass per split (train pool, validation, each augmented view of the pool)."""
    if cache is None:
        return
    from transferlab.strategies.base import view_states

    cuts = sorted(k for k in cuts if cache.holds(pretrained, key, data.train, k))
    if not cuts:  # none is read, or none this big is cached: trials run their prefixes
        return
    held = [("held", data._held)] if data._held is not None else [("val", data.val)]  # per-seed splits: their pool
    for split_key, split in (("train", data.train), *held):
        cache.states(pretrained, key, split_key, split, cuts[0])
    if data.augment is not None:
        view_states(cache, pretrained, key, data, cuts[0])


# ---- one worker's state ----------------------------------------------------------
_WORKER: dict = {}


def _init_worker(pretrained, key, data, config, device, disk_dir, threads, view_cuts):
    torch.set_num_threads(threads)
    cache = make_cache(config, device, disk_dir)
    if cache is not None:
        cache.want(view_cuts)  # the cuts this study's trials read (its main process has computed them already)
        cache.want_views(view_cuts)
    _WORKER.update(pretrained=pretrained, key=key, data=data, budget=config.budget, device=device, cache=cache,
                   halving=config.halving, members=batch_mode(config.batch_members, device)[0])


def _worker_run(group: list[TrialSpec]) -> list[dict]:
    w = _WORKER
    return [r.to_dict() for r in run_seeds(group, w["pretrained"], w["key"], w["data"], w["budget"], w["cache"],
                                           w["device"], halving=w["halving"], members=w["members"])]


def seed_groups(specs: list[TrialSpec], together: bool) -> list[list[TrialSpec]]:
    """The units of work: with members trained together, the seeds of one configuration and size (one cohort:
    ``trial.run_seeds``), in the order their first trial was planned; else each trial alone."""
    if not together:
        return [[s] for s in specs]
    groups: dict = {}
    for s in specs:
        groups.setdefault((s.label, s.n_train), []).append(s)
    return list(groups.values())


def _threads(workers: int, pretrained) -> int:
    from transferlab.threads import threads_for

    return threads_for(sum(p.numel() for p in pretrained.parameters()), workers)


# ---- executors -------------------------------------------------------------------
def is_parallel(config) -> bool:
    return config.executor != "inline" and (config.workers > 1 or config.executor == "ray")


def study_cache(config, device, out: Path | None, cuts) -> FeatureCache | None:
    """The study's one cache: its files live in ``out/cache`` so reruns and worker processes find them.  ``cuts``:
    those a pass over a split yields (the ones the trials and measurements read), each for the whole split."""
    cache = make_cache(config, device, (out / "cache") if out else None)
    if cache is not None:
        cache.want(cuts)
    return cache


def run_trials(specs: list[TrialSpec], pretrained, key: str, data, config, device: str, out: Path | None, on_record,
               cache: FeatureCache | None = None, pool: WorkerPool | None = None) -> None:
    """``cache``: the study's cache (already holding what the profile computed); made here if None.  ``pool``: worker
    processes kept for the study's next round (a pool of its own, closed at the end, if None)."""
    if not specs:
        return
    parallel = is_parallel(config)
    with tempfile.TemporaryDirectory(prefix="transferlab-cache-") as tmp:
        disk_dir = (out / "cache") if out else (Path(tmp) if parallel else None)
        if cache is None or (parallel and out is None):
            # Workers share through files; a study cache without an out folder lives in memory and cannot be handed over.
            cache = make_cache(config, device, disk_dir)
        view_cuts = planned_cuts(specs, pretrained)
        if cache is not None:
            cache.want(view_cuts)  # what these trials read (e.g. a layers command's own configurations)
            cache.want_views(view_cuts)
        members = batch_mode(config.batch_members, device)[0]
        groups = seed_groups(specs, members)
        if not parallel:
            for group in groups:
                for rec in run_seeds(group, pretrained, key, data, config.budget, cache, device,
                                     halving=config.halving, members=members):
                    on_record(rec.to_dict())
            return
        warm(cache, pretrained, key, data, view_cuts)
        if config.executor == "process":
            # Without an out folder the cache files live in this call's temporary folder: its workers end with it.
            own = pool is None or out is None
            pool = WorkerPool() if own else pool
            try:
                init = (pretrained, key, data, config, device, disk_dir, _threads(config.workers, pretrained), view_cuts)
                _process_pool(pool, groups, init, on_record)
            finally:
                if own:
                    pool.close()
        else:
            _ray(groups, pretrained, key, data, config, device, disk_dir, on_record, view_cuts)


class WorkerPool:
    """The worker processes of a study, kept from one round of seeds to the next.  Starting them (spawning,
    importing torch, unpickling the model and the data) cost about 4 s a round on the demo (2 cores).  A pool is
    reused only for the same model, data, settings and cache folder, and for cuts its workers already want;
    anything else, a round that failed, or a pool a dead worker broke starts a new one."""

    def __init__(self):
        self._pool: cf.ProcessPoolExecutor | None = None
        self._init: tuple | None = None

    def _fits(self, init: tuple) -> bool:
        if self._init is None:
            return False
        (model, key, data, config, *rest, cuts), (model0, key0, data0, config0, *rest0, cuts0) = init, self._init
        same_objects = model is model0 and data is data0 and config is config0
        return same_objects and (key, *rest) == (key0, *rest0) and set(cuts) <= set(cuts0)

    def get(self, workers: int, init: tuple) -> cf.ProcessPoolExecutor:
        """A pool of ``workers`` processes set up by ``_init_worker(*init)``: the kept one if it fits."""
        if self._pool is not None and (not self._fits(init) or self._pool._broken):  # e.g. a worker killed for memory
            self.close()
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                                initargs=init)
            self._init = init
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._init = None, None


def _process_pool(pool: WorkerPool, groups, init: tuple, on_record) -> None:
    workers = pool.get(init[3].workers, init)  # looked up once per round, not once per unit of work
    futures = [workers.submit(_worker_run, group) for group in groups]
    try:
        for fut in cf.as_completed(futures):
            for rec in fut.result():
                on_record(rec)
    except BaseException:
        for f in futures:
            f.cancel()
        pool.close()  # a failed or interrupted round leaves no worker behind, and the next round starts afresh
        raise


def _ray_task(group, pretrained, key, data, config, device, disk_dir, threads, view_cuts) -> list[dict]:
    if not _WORKER or _WORKER.get("key") != key:
        _init_worker(pretrained, key, data, config, device, disk_dir, threads, view_cuts)
    return _worker_run(group)


def _ray(groups, pretrained, key, data, config, device, disk_dir, on_record, view_cuts) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray", 'pip install "transferlab[ray]"') from None
    started = not ray.is_initialized()
    if started:
        kwargs = {"address": config.ray_address} if config.ray_address else {"num_cpus": max(1, config.workers)}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        gpus = 1 if str(device).startswith("cuda") else 0  # one GPU per trial when present
        task = ray.remote(num_cpus=1, num_gpus=gpus)(_ray_task)
        shared = [ray.put(x) for x in (pretrained, data, config)]
        threads = _threads(max(1, config.workers), pretrained)
        pending = [task.remote(g, shared[0], key, shared[1], shared[2], device, disk_dir, threads, view_cuts)
                   for g in groups]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for rec in ray.get(done[0]):
                on_record(rec)
    finally:
        if started:
            ray.shutdown()
