"""Run one trial: tune on validation, then open the test split once."""
from __future__ import annotations

import dataclasses
import gc
import inspect
import math
import time
import traceback
from dataclasses import dataclass, field

import torch

from transferlab.accel import on_cuda
from transferlab.backbones.base import Backbone
from transferlab.cache import FeatureCache
from transferlab.data.base import TargetData
from transferlab.errors import UserError
from transferlab.results import TrialRecord, TrialSpec, pack_correct
from transferlab.rng import member_seed
from transferlab.strategies.base import Fitted, TrialContext, from_spec
from transferlab.training import Budget


def _rank(fitted: Fitted) -> tuple[float, float]:
    """Higher is better: validation accuracy, then lower validation loss."""
    r = fitted.result
    return (r.best_val_acc, -r.best_val_loss)


def _usable(fitted: Fitted) -> bool:
    r = fitted.result
    return r.diverged_step is None and math.isfinite(r.best_val_acc) and math.isfinite(r.best_val_loss)


def halve(fits: list[Fitted], *others: list[Fitted]) -> None:
    """Successive halving on validation: every candidate trains to the first rung (a quarter of the step
    budget), the better half goes on to the next rung (twice as far), and so on; the last one trains until it
    ends by the fit loop's own rule.  Candidates without steps (a closed-form probe) are already finished.

    ``others``: the candidate lists of other trials trained in the same cohort (their seeds): each list is
    halved on its own, rung by rung in step with the rest, so no trial's candidates train past a rung before
    its own cut is made there (the cut then sees what it would see alone)."""
    trials = [[f for f in group if f.run is not None] for group in (fits, *others)]
    trials = [alive for alive in trials if alive]
    if not trials:
        return
    if len({(t[0].run.plan.steps, t[0].run.plan.eval_every) for t in trials}) > 1:  # rungs differ: not in step
        for alive in trials:
            halve(alive)
        return
    steps = trials[0][0].run.plan.steps  # the candidates of one trial share the training subset, so the plan
    rung = max(trials[0][0].run.plan.eval_every, steps // 4)
    while any(len(alive) > 1 for alive in trials) and rung < steps:
        for alive in trials:
            if len(alive) > 1:
                for f in alive:
                    f.advance(rung)
        for i, alive in enumerate(trials):
            if len(alive) > 1:
                ranked = sorted(alive, key=lambda f: _rank(f) if _usable(f) else (-1.0, -math.inf), reverse=True)
                keep = ranked[: math.ceil(len(alive) / 2)]
                for f in alive:
                    if f not in keep:
                        f.finish(early=True)
                trials[i] = keep
        rung *= 2
    for alive in trials:
        for f in alive:
            f.finish()


def grid_key(candidates: list[dict]) -> str | None:
    """The one tuned value that differs between candidates (``lr``, a probe's ``C``), if there is one."""
    keys = [k for k in candidates[0] if isinstance(candidates[0][k], (int, float))
            and len({c.get(k) for c in candidates}) > 1]
    return keys[0] if len(keys) == 1 else None


def _score_test(best: Fitted, data: TargetData, spec: TrialSpec, rows: list) -> tuple[float, float]:
    """The chosen candidate on the test split, filling ``rows`` with each example's correctness where its evaluate
    takes them (a plugin strategy's ``evaluate(split, key)`` without them still scores, without the rows)."""
    test = data.test.open(reason=spec.trial_id)
    try:
        inspect.signature(best.evaluate).bind(test, data.key("test"), rows)
    except TypeError:
        return best.evaluate(test, data.key("test"))
    return best.evaluate(test, data.key("test"), rows)


def _best(fits: list) -> tuple | None:
    usable = [(c, f) for c, f in fits if _usable(f)]
    return max(usable, key=lambda cf: _rank(cf[1])) if usable else None  # ties: the first (original) candidate


def release_losers(fits: list) -> None:
    """Free every trained candidate that can no longer be chosen: all but the best so far (and any tied with it)."""
    best = _best(fits)
    for _, f in fits:
        if best is None or f is not best[1] and (not _usable(f) or _rank(f) < _rank(best[1])):
            f.release()


def extend_grid(strategy, ctx: TrialContext, fits: list, budget: Budget) -> list[str]:
    """A chosen value on an edge of its grid is not known to be the best: train one more value beyond that edge
    (one grid ratio further), and again, up to ``budget.grid_extensions`` times. The same rule for every
    strategy, scratch included. Returns the edges extended ("below", "above") in order."""
    key = grid_key([c for c, _ in fits]) if len(fits) > 1 else None
    extended: list[str] = []
    while key is not None and len(extended) < budget.grid_extensions:
        release_losers(fits)  # before the next value trains beside them
        best = _best(fits)
        values = sorted(c[key] for c, _ in fits)
        if best is None:  # every value diverged: the grid needs smaller ones (an LR) more than anything
            best = (next(c for c, _ in fits if c[key] == values[0]), None)
        v = best[0][key]
        if v == values[0]:
            edge, new = "below", values[0] * values[0] / values[1]
        elif v == values[-1]:
            edge, new = "above", values[-1] * values[-1] / values[-2]
        else:
            break
        candidate = {**best[0], key: float(f"{new:.6g}")}
        torch.manual_seed(ctx.seed)  # the same head initialisation as the grid's candidates
        fitted = strategy.fit(_for(ctx, candidate), candidate)
        fitted.finish()
        fits.append((candidate, fitted))
        extended.append(edge)
    return extended


def inference_ms(predictor, split, device: str = "cpu", rows: int = 64, reps: int = 5) -> float | None:
    """Milliseconds per example of the deployed network on a batch of (up to) ``rows`` validation inputs: the
    fastest of ``reps`` timed passes after one warm-up, so a busy moment does not count."""
    if predictor is None:
        return None
    from transferlab.accel import move
    from transferlab.data.base import take

    x = move(take(split.inputs, torch.arange(min(rows, len(split)))), device)
    was = getattr(predictor, "training", None)
    if was is not None:
        predictor.eval()
    times = []
    with torch.no_grad():
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            predictor(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    if was:
        predictor.train()
    return 1000 * min(times[1:]) / len(x)


def run_trial(spec: TrialSpec, pretrained: Backbone, model_key: str, data: TargetData, budget: Budget,
              cache: FeatureCache | None = None, device: str = "cpu", hooks: tuple = (),
              keep: list | None = None, halving: bool = False, members: bool = False) -> TrialRecord:
    """Train the candidates, choose on validation, evaluate the chosen one on test.

    ``halving``: prune the candidates by successive halving (see ``halve``); off, each trains until it
    ends.  ``members``: train the candidates as one batched model where the network allows
    (``members.Cohort``: each keeps its own optimizer, stream, stopping and checkpoint), else one after the
    other.  A choice on an edge of the grid extends the grid (``extend_grid``).
    ``keep``: if a list, the chosen ``Fitted`` is appended to it.
    """
    return run_seeds([spec], pretrained, model_key, data, budget, cache, device, hooks, keep, halving, members)[0]


@dataclass
class _Open:
    """A trial between its start and its record: its own data, context and candidates."""

    spec: TrialSpec
    strategy: object
    data: TargetData
    ctx: TrialContext
    record: TrialRecord
    spent: float = 0.0  # seconds of this trial's own work so far (its share, where trials trained together)
    fits: list = field(default_factory=list)


def run_seeds(specs: list[TrialSpec], pretrained: Backbone, model_key: str, data: TargetData, budget: Budget,
              cache: FeatureCache | None = None, device: str = "cpu", hooks: tuple = (), keep: list | None = None,
              halving: bool = False, members: bool = False) -> list[TrialRecord]:
    """``run_trial`` for trials of one configuration and size that differ in their seed.  With ``members``, all
    their candidates (seeds x learning rates) train as one batched model where the network allows; each trial
    still has its own initialisation, training rows, splits, data order, halving, stopping and checkpoint, so
    its record equals the one it gets alone up to float rounding (exactly in float64: tests/oracles/test_members.py).
    Otherwise, or when the cohort fails as a whole, each trial runs alone.  The seeds go in cohorts of as many as
    fit the free memory (``members.seeds_that_fit``, from the first seed's measured footprint).
    A trial's ``wall_s`` is its own time plus its share of the time they trained together."""
    if not members or len(specs) == 1:
        out = []
        for spec in specs:
            trial = _open(spec, pretrained, model_key, data, budget, cache, device, hooks, lazy=halving or members)
            t0 = time.perf_counter()
            if trial.record.error is None:
                _train([trial], halving, members)
            trial.spent += time.perf_counter() - t0
            out.append(_close(trial, pretrained, device, keep))
        return out
    args = (pretrained, model_key, data, budget, cache, device, hooks)
    first = _open(specs[0], *args, lazy=True)
    cap, why = _seeds_per_cohort(first, device)
    if cap == 0:  # one seed's members do not fit: each seed alone, its candidates one at a time
        for _, f in first.fits:
            if f.run is not None:
                f.run._periods.close()  # never started; its frame holds the run (and the model)
        first = None
        gc.collect()
        if on_cuda(device):
            torch.cuda.empty_cache()
        out = run_seeds(specs, *args, keep=keep, halving=halving, members=False)
        for rec in out:
            rec.members = f"one at a time: {why}"
        return out
    out: list[TrialRecord] = []
    for start in range(0, len(specs), cap):  # cohorts of the seeds that fit the free memory, in seed order
        trials = [first] if start == 0 else []
        first = None  # freed with its cohort, not kept through the later ones
        trials += [_open(s, *args, lazy=True) for s in specs[start + len(trials): start + cap]]
        out += _cohort(trials, args, keep, halving, members)
        del trials
        gc.collect()  # a cohort's members refer to each other: free them now, before the next cohort is built
        if on_cuda(device):
            torch.cuda.empty_cache()
    return out


def _seeds_per_cohort(trial: _Open, device: str) -> tuple[int, str]:
    """How many seeds train as one cohort, and why: as many as fit ``members.MEMORY_SHARE`` of the free memory,
    from the measured footprint of this (first) seed's members; every seed where nothing trains by steps; 0 where
    not even one seed's members fit; 1 where the footprint cannot be measured."""
    from transferlab.members import MEMORY_SHARE, free_bytes, member_bytes, seeds_that_fit

    runs = [f.run for _, f in trial.fits if f.run is not None]
    if trial.record.error is not None:
        return 1, ""  # it failed as it was built (memory, say): one seed at a time is the safe way on
    if not runs:
        return 1 << 30, ""
    try:
        need = member_bytes(runs[0]) * len(runs)
    except Exception as exc:  # noqa: BLE001 - a measurement: one seed per cohort is always safe
        return 1, f"footprint not measured ({type(exc).__name__})"
    free = free_bytes(device)
    if need > MEMORY_SHARE * free:
        return 0, (f"its {len(runs)} candidates need about {need / 2**20:.0f} MB together, more than "
                   f"{MEMORY_SHARE:.0%} of the {free / 2**20:.0f} MB free")
    return seeds_that_fit(need, device, free), ""


def _cohort(trials: list[_Open], args: tuple, keep, halving: bool, members: bool) -> list[TrialRecord]:
    """Train opened trials of one configuration (its seeds) as one cohort, close them; a cohort that failed as a
    whole runs each of its seeds again alone."""
    pretrained, device = args[0], args[5]
    ready = [t for t in trials if t.record.error is None]
    t0 = time.perf_counter()
    _train(ready, halving, members)
    for t in ready:
        t.spent += (time.perf_counter() - t0) / len(ready)  # the time they trained together, shared out
    failed = len(ready) > 1 and any(t.record.error is not None for t in ready)
    if failed:  # free the cohort's models and optimizers before its seeds run again (it may have run out of memory)
        for t in ready:
            t.fits.clear()
            t.ctx.memo.clear()
        if on_cuda(device):
            torch.cuda.empty_cache()
    else:  # every seed's losers, before the first seed's grid extension trains beside them
        for t in ready:
            release_losers(t.fits)
    out = []
    for t in trials:
        if failed and t in ready:
            # The cohort failed as a whole: not a fault of this trial's own, so it runs again alone, from the start.
            rec = run_seeds([t.spec], *args, keep=keep, halving=halving, members=members)[0]
            why = f"its seeds' cohort failed ({t.record.error.splitlines()[0][:120]})"
            rec.members = f"{rec.members}; {why}" if rec.members else why
            out.append(rec)
        else:
            out.append(_close(t, pretrained, device, keep))
    return out


def _open(spec, pretrained, model_key, data, budget, cache, device, hooks, lazy: bool) -> _Open:
    """The trial's data and its candidates, built (and, unless ``lazy``, trained) in the order they run alone."""
    t0 = time.perf_counter()
    strategy = from_spec(spec.strategy, spec.params)
    data = data.for_seed(spec.seed)  # this seed's own validation and test examples, when they are redrawn per seed
    idx = data.train_indices(spec.n_train, spec.seed)
    ctx = TrialContext(pretrained, model_key, data, idx, spec.seed, budget, cache, device, hooks, lazy=lazy)
    record = TrialRecord(spec.trial_id, spec.strategy, spec.label, spec.params, spec.seed, spec.n_train,
                         len(idx), status="failed", total_params=sum(p.numel() for p in pretrained.parameters()))
    trial = _Open(spec, strategy, data, ctx, record)
    try:
        for candidate in strategy.candidates(budget):
            torch.manual_seed(spec.seed)  # every candidate starts from the same head initialisation
            trial.fits.append((candidate, strategy.fit(_for(ctx, candidate), candidate)))
    except UserError:
        raise
    except Exception as exc:  # a bug or a resource failure: record it, the study goes on
        _failed(trial, exc)
    trial.spent = time.perf_counter() - t0
    return trial


def _for(ctx: TrialContext, candidate: dict) -> TrialContext:
    """The trial's context for one candidate: its own random draws while it trains (dropout masks and the like),
    seeded from (seed, candidate), so they are the same whatever trains beside it (``rng``)."""
    return dataclasses.replace(ctx, rng_seed=member_seed(ctx.seed, candidate))


def _failed(trial: _Open, exc: Exception) -> None:
    trial.record.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"


def _train(trials: list[_Open], halving: bool, members: bool) -> None:
    """Train the trials' candidates to their ends: as one cohort (all trials' runs together, else each trial's
    own) when ``members``, with successive halving rung by rung when ``halving``."""
    try:
        if members:
            _cohorts(trials)
        fits = [[f for _, f in t.fits] for t in trials]
        if halving and fits:
            halve(*fits)
        for group in fits:
            for f in group:  # trained already unless lazy
                f.finish()
    except UserError:
        raise
    except Exception as exc:  # one cohort: its failure is every member's
        for t in trials:
            _failed(t, exc)


def _cohorts(trials: list[_Open]) -> None:
    from transferlab.members import NotBatchable, describe, try_together

    runs = [[f.run for _, f in t.fits if f.run is not None and not f.run.done] for t in trials]
    every = [r for rs in runs for r in rs]
    if not every:
        return
    why = try_together(every)
    if not isinstance(why, NotBatchable) or len(trials) == 1:
        for t in trials:
            t.record.members = describe(every, why, tuple(x.spec.seed for x in trials))
        return
    for t, rs in zip(trials, runs):  # the seeds cannot share one model (e.g. step plans differ): each trial alone
        alone = try_together(rs) if rs else why
        t.record.members = describe(rs, alone) + f" (seeds apart: {why})"


def _close(trial: _Open, pretrained: Backbone, device: str, keep: list | None) -> TrialRecord:
    """Extend the grid if the choice is on its edge, choose on validation, open the test split once."""
    spec, data, record, fits = trial.spec, trial.data, trial.record, trial.fits
    t0 = time.perf_counter() - trial.spent
    if record.error is None:
        try:
            record.grid_extended = extend_grid(trial.strategy, trial.ctx, fits, trial.ctx.budget)
            release_losers(fits)  # the last extension's loser too: only the chosen candidate is scored and kept
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001
            _failed(trial, exc)
    if record.error is not None:
        record.wall_s = time.perf_counter() - t0
        return record
    strategy = trial.strategy
    record.candidates = [{**c, "best_val_acc": f.result.best_val_acc, "best_step": f.result.best_step,
                          "diverged_step": f.result.diverged_step, "steps": f.steps_run, "stop": f.result.stop}
                         for c, f in fits]
    record.steps_run = sum(f.steps_run for _, f in fits)
    best_pair = _best(fits)
    if best_pair is None:
        record.status = "diverged"
        record.diverged_step = min(f.result.diverged_step or 0 for _, f in fits)
        record.wall_s = time.perf_counter() - t0
        return record
    chosen, best = best_pair
    rows: list = []
    test_loss, test_acc = _score_test(best, data, spec, rows)
    record.status = "ok"
    record.test_acc, record.test_loss = test_acc, test_loss
    record.test_correct = pack_correct(rows) if len(rows) == len(data.test) else None
    record.best_val_acc, record.best_step = best.result.best_val_acc, best.result.best_step
    if data.holdout is not None:  # scores the choice on examples that made none of it (data.base.hold_out)
        record.holdout_acc = best.evaluate(data.holdout, data.key("holdout"))[1]
    record.chosen = dict(chosen)
    key = grid_key([c for c, _ in fits]) if len(fits) > 1 else None
    record.chosen_at_edge = key is not None and chosen[key] in (min(c[key] for c, _ in fits), max(c[key] for c, _ in fits))
    record.converged, record.stop = best.result.converged, best.result.stop
    record.budget_steps = best.result.budget_steps
    record.history = [vars(h) for h in best.result.history]
    record.trainable_params = best.trainable_params
    if best.deploy_params is not None:
        record.total_params = best.deploy_params
    try:  # a measurement beside the result: its failure leaves it empty, the trial stands
        record.infer_ms = inference_ms(best.predictor, data.val, device)
    except Exception:  # noqa: BLE001
        record.infer_ms = None
    record.cached, record.frozen_blocks = best.cached, best.frozen_blocks
    record.dynamics = best.dynamics
    if (isinstance(best.model, Backbone) and best.frozen_blocks < (best.model.kept_from or pretrained.n_blocks)
            and strategy.reuses_weights):  # some kept pretrained block trained (a head at cut k moves none)
        from transferlab.moved import what_moved

        try:  # a diagnostic: its failure is noted, the trial's result stands
            record.moved = what_moved(pretrained, best.model, data.val)
        except Exception as exc:  # noqa: BLE001
            record.error = f"what_moved: {type(exc).__name__}: {exc}"
    record.wall_s = time.perf_counter() - t0
    if keep is not None:
        keep.append(best)
    return record


def zero_shot(pretrained: Backbone, data: TargetData, batch_size: int = 512, device: str = "cpu") -> TrialRecord | None:
    """Accuracy of the source model, untouched, on test examples of classes it already knows."""
    if not pretrained.class_names:
        return None
    source = {name: i for i, name in enumerate(pretrained.class_names)}
    shared = [c for c, name in enumerate(data.class_names) if name in source]
    if not shared:
        return None
    t0 = time.perf_counter()
    test = data.test.open(reason="zero_shot")
    keep = torch.isin(test.y, torch.as_tensor(shared))
    sub = test.subset(torch.nonzero(keep).flatten())
    # Map each target label to the source head's index of the same class name.
    to_source = torch.full((data.n_classes,), -1, dtype=torch.long)
    for c in shared:
        to_source[c] = source[data.class_names[c]]
    from transferlab.accel import move, placed
    from transferlab.training import batched

    model = placed(pretrained, device).eval()  # a device copy: the shared pretrained model is not moved
    with torch.no_grad():
        logits = batched(lambda x: model(move(x, device)).cpu(), sub.inputs, batch_size)
    acc = float((logits.argmax(1).cpu() == to_source[sub.y]).float().mean())
    spec = TrialSpec("zero_shot", {}, 0, 0)
    return TrialRecord(spec.trial_id, "zero_shot", "zero_shot", {}, 0, 0, 0, "ok", test_acc=acc,
                       chosen={"classes_shared": len(shared), "test_examples": len(sub)},
                       wall_s=time.perf_counter() - t0, total_params=sum(p.numel() for p in pretrained.parameters()))
