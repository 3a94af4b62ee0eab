"""Where trials run: inline, in a pool of worker processes, or as Ray tasks.

Trials are independent.  Workers share the frozen-feature cache through its
memory-mapped files: the main process computes every cut of the train and
validation splits once, before any worker starts, and the workers map them.
Torch threads per worker are set so the workers do not oversubscribe the cores.
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
from transferlab.trial import run_trial



def make_cache(config, device, disk_dir: Path | None) -> FeatureCache | None:
    if not config.cache:
        return None
    return FeatureCache(config.budget.eval_batch_size, device, config.cache_memory_mb << 20, disk_dir,
                        fp16=config.cache_fp16, persist=disk_dir is not None)


def warm(cache: FeatureCache | None, pretrained, key: str, data) -> None:
    """One forward pass per split (train pool, validation) yielding every cut; written for the workers."""
    if cache is None:
        return
    from transferlab.strategies.base import view_states

    if not cache.holds(pretrained, key, data.train, 1):  # nothing this big is cached: trials run their prefixes
        return
    held = [("held", data._held)] if data._held is not None else [("val", data.val)]  # per-seed splits: their pool
    for split_key, split in (("train", data.train), *held):
        cache.states(pretrained, key, split_key, split, 1)
    if data.augment is not None:
        view_states(cache, pretrained, key, data, 1)


# ---- one worker's state ----------------------------------------------------------
_WORKER: dict = {}


def _init_worker(pretrained, key, data, config, device, disk_dir, threads):
    torch.set_num_threads(threads)
    cache = make_cache(config, device, disk_dir)
    if cache is not None:
        cache.want(range(1, pretrained.n_blocks + 1))
    _WORKER.update(pretrained=pretrained, key=key, data=data, budget=config.budget, device=device, cache=cache,
                   halving=config.halving, members=batch_mode(config.batch_members, device)[0])


def _worker_run(spec: TrialSpec) -> dict:
    w = _WORKER
    return run_trial(spec, w["pretrained"], w["key"], w["data"], w["budget"], w["cache"], w["device"],
                     halving=w["halving"], members=w["members"]).to_dict()


def _threads(workers: int, pretrained) -> int:
    from transferlab.threads import threads_for

    return threads_for(sum(p.numel() for p in pretrained.parameters()), workers)


# ---- executors -------------------------------------------------------------------
def is_parallel(config) -> bool:
    return config.executor != "inline" and (config.workers > 1 or config.executor == "ray")


def study_cache(config, device, out: Path | None, n_blocks: int) -> FeatureCache | None:
    """The study's one cache: its files live in ``out/cache`` so reruns and worker processes find them."""
    cache = make_cache(config, device, (out / "cache") if out else None)
    if cache is not None:
        cache.want(range(1, n_blocks + 1))
    return cache


def run_trials(specs: list[TrialSpec], pretrained, key: str, data, config, device: str, out: Path | None, on_record,
               cache: FeatureCache | None = None) -> None:
    """``cache``: the study's cache (already holding what the profile computed); made here if None."""
    if not specs:
        return
    parallel = is_parallel(config)
    with tempfile.TemporaryDirectory(prefix="transferlab-cache-") as tmp:
        disk_dir = (out / "cache") if out else (Path(tmp) if parallel else None)
        if cache is None or (parallel and out is None):
            # Workers share through files; a study cache without an out folder lives in memory and cannot be handed over.
            cache = make_cache(config, device, disk_dir)
            if cache is not None:
                cache.want(range(1, pretrained.n_blocks + 1))
        if not parallel:
            members = batch_mode(config.batch_members, device)[0]
            for spec in specs:
                on_record(run_trial(spec, pretrained, key, data, config.budget, cache, device, halving=config.halving,
                                    members=members).to_dict())
            return
        warm(cache, pretrained, key, data)
        if config.executor == "process":
            _process_pool(specs, pretrained, key, data, config, device, disk_dir, on_record)
        else:
            _ray(specs, pretrained, key, data, config, device, disk_dir, on_record)


def _process_pool(specs, pretrained, key, data, config, device, disk_dir, on_record) -> None:
    init = (pretrained, key, data, config, device, disk_dir, _threads(config.workers, pretrained))
    with cf.ProcessPoolExecutor(config.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                initargs=init) as pool:
        futures = [pool.submit(_worker_run, spec) for spec in specs]
        try:
            for fut in cf.as_completed(futures):
                on_record(fut.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _ray_task(spec, pretrained, key, data, config, device, disk_dir, threads) -> dict:
    if not _WORKER or _WORKER.get("key") != key:
        _init_worker(pretrained, key, data, config, device, disk_dir, threads)
    return _worker_run(spec)


def _ray(specs, pretrained, key, data, config, device, disk_dir, on_record) -> None:
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
        pending = [task.remote(s, shared[0], key, shared[1], shared[2], device, disk_dir, threads) for s in specs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            on_record(ray.get(done[0]))
    finally:
        if started:
            ray.shutdown()
