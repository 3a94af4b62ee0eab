"""What a study will cost, measured before it trains.

For every distinct trainable suffix of the plan (the first block that trains: 0 for a full fine-tune, k for
``freeze_k(k)``, n for a head on the frozen body) a few passes of the real fit loop run on a small batch of the
target's training inputs (the first warms up kernels and allocators, the next are timed), and a forward pass
is timed for evaluation and for the frozen prefix. The plan is then multiplied out: each trial's candidate
steps (successive halving included, every candidate to its step budget: convergence can end it sooner, a run
still improving can go on longer) times the batch, plus validation every period, the test pass, the copy of
the model and, once per cut, the frozen prefix the cache computes. It is an estimate of wall time on this
machine for one worker.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from transferlab.accel import move, prepare_model
from transferlab.data.base import Split, take, to_device
from transferlab.results import TrialSpec
from transferlab.fitloop import FitRun, evaluate
from transferlab.training import Budget, batched, param_groups

SAMPLE = 32  # examples per timed batch: small, so that measuring costs seconds even for a large model
TIMED_S, MAX_EPOCHS = 0.5, 8


@dataclass
class CutCost:
    """Seconds per example at one cut: a training step of the suffix, its evaluation, the prefix forward."""

    cut: int
    train_s: float
    eval_s: float
    prefix_s: float


@dataclass
class Estimate:
    """The plan multiplied out, in seconds of one process. ``first_s``: the first round of seeds (all of a fixed
    design); ``max_s``: every configuration at every seed up to ``max_seeds`` (a sequential study's worst case).
    ``parallel`` trial processes share them and ``once_s`` (the cache's passes) runs alone: ``wall`` is the clock."""

    first_s: float
    max_s: float
    trials_first: int
    trials_max: int
    steps: int  # the step budget of one candidate at the plan's largest size
    measure_s: float
    device: str
    per_label: dict = field(default_factory=dict)  # label -> estimated seconds over the first round
    per_label_max: dict = field(default_factory=dict)  # label -> over every seed
    alternatives: dict = field(default_factory=dict)  # e.g. {"--max-seeds 3": seconds}
    trial_s: dict = field(default_factory=dict)  # trial_id -> estimated seconds (drives the time left)
    notes: list = field(default_factory=list)  # what the plan left out, e.g. default sizes the data cannot fill
    parallel: int = 1  # trials running at once (worker processes)
    once_s: float = 0.0  # of first_s and max_s, what runs before the trials: the cache's passes
    # "label @ size" -> estimated seconds of one trial: what a finished study's trials were expected to cost
    # (benchmarks/bench_estimate.py holds them against the wall time)
    per_trial: dict = field(default_factory=dict)

    def wall(self, seconds: float) -> float:
        """Seconds of one process (``first_s``, ``max_s``, a sum of them) as wall time: the trials share the
        workers; the cache's passes do not (on 2 cores the demo's first round took 63 s where one process
        would take 120)."""
        return min(seconds, self.once_s) + max(0.0, seconds - self.once_s) / max(1, self.parallel)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("trial_s")
        return d

    def text(self) -> str:
        head = f"about {clock(self.wall(self.first_s))} on this machine ({self.device}) for {self.trials_first} trials"
        if self.parallel > 1:
            head += f" in {self.parallel} worker processes"
        if self.trials_max > self.trials_first:
            head += (f"; up to {clock(self.wall(self.max_s))} if every verdict stays open to the last seed "
                     f"({self.trials_max} trials)")
        alts = "; ".join(f"{k} would take about {clock(self.wall(v))}" for k, v in self.alternatives.items())
        return f"Estimated: {head}." + (f" {alts}." if alts else "") + "".join(f" {n}." for n in self.notes)


def clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    h, m = divmod(minutes, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min"


def candidate_steps(n_candidates: int, steps: int, eval_every: int, halving: bool) -> int:
    """Steps trained over all LR candidates when none ends before its budget (``trial.halve``'s rungs, each
    reached in whole evaluation periods)."""
    def whole(s: int) -> int:
        return min(steps, math.ceil(s / eval_every) * eval_every)

    if not halving or n_candidates < 2:
        return n_candidates * steps
    alive, rung, reached, total = n_candidates, max(eval_every, steps // 4), 0, 0
    while alive > 1 and rung < steps:
        total += alive * (whole(rung) - reached)
        alive, reached, rung = math.ceil(alive / 2), whole(rung), rung * 2
    return total + alive * (steps - reached)


def _timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure_cut(backbone, data, budget: Budget, cut: int, device: str) -> CutCost:
    """Time the suffix from ``cut`` on SAMPLE training examples: one warm-up epoch, then one timed."""
    n = min(SAMPLE, len(data.train))
    idx = torch.arange(n)
    sample = Split(take(data.train.inputs, idx), data.train.y[idx])
    bb = copy.deepcopy(backbone).replace_head(data.n_classes)
    bb.freeze(cut)
    bb = prepare_model(bb, device).eval()  # in the layout the trials train and cache in
    with torch.no_grad():
        batched(lambda x: bb.features(x, cut), sample.inputs, budget.eval_batch_size)  # warm-up
        holder = {}
        prefix = _timed(lambda: holder.update(f=batched(lambda x: bb.features(x, cut), sample.inputs,
                                                        budget.eval_batch_size)), device)
    states = Split(to_device(holder["f"], "cpu"), sample.y)
    model = bb.suffix(cut)
    groups = param_groups(list(bb.blocks.values()), bb.head, budget.lrs[0])
    # Pass 1 warms up (kernels, allocator); later passes are timed until about TIMED_S has passed, so that a
    # tiny model's millisecond passes are measured more than once and a large model's only once.
    per_pass = math.ceil(n / budget.batch_size)
    timing = replace(budget, steps=MAX_EPOCHS * per_pass, epochs=None, eval_every=per_pass, patience=MAX_EPOCHS, extend=1)
    run = FitRun(model, groups, states, states, timing, torch.Generator().manual_seed(0), device=device)
    run.advance(per_pass)
    while not run.done and run.steps_run < MAX_EPOCHS * per_pass and sum(h.seconds for h in run.result.history[1:]) < TIMED_S:
        run.advance(run.steps_run + per_pass)
    run.finish(early=True)
    timed = [h.seconds for h in run.result.history[1:]] or [h.seconds for h in run.result.history]
    eval_s = min(_timed(lambda: evaluate(model, states, budget.eval_batch_size, device), device) for _ in range(2))
    pass_s = float(torch.tensor(timed).median()) if timed else eval_s
    # A timed pass trains per_pass full batches (batch_stream), so that many rows, not n.
    return CutCost(cut, max(0.0, pass_s - eval_s) / (per_pass * budget.batch_size), eval_s / n, prefix / n)


def block_seconds(backbone, data, batch_size: int, device: str) -> list[float]:
    """Forward seconds per example of each block, from one timed pass after a warm-up pass."""
    n = min(SAMPLE, len(data.train))
    x0 = take(data.train.inputs, torch.arange(n))
    bb = prepare_model(copy.deepcopy(backbone), device).eval()
    out = []
    with torch.no_grad():
        for _ in range(2):  # the first pass warms up; the second's times are kept
            x = move(x0, device)
            out = []
            for block in bb.blocks.values():
                holder = {}
                out.append(_timed(lambda: holder.update(y=block(x)), device) / n)
                x = holder["y"]
    return out


def measure_cuts(backbone, data, budget: Budget, cuts: set, device: str) -> dict[int, CutCost]:
    """Cut 0 (everything trains) and cut n (only the head) are timed; a cut between them is interpolated by the
    share of forward time its suffix holds (training a block costs about a fixed multiple of its forward pass),
    so the estimate costs two timed fits whatever the number of blocks."""
    n = backbone.n_blocks
    if cuts <= {0, n}:
        return {c: measure_cut(backbone, data, budget, c, device) for c in cuts}
    full, head = measure_cut(backbone, data, budget, 0, device), measure_cut(backbone, data, budget, n, device)
    blocks = block_seconds(backbone, data, budget.eval_batch_size, device)
    total = sum(blocks) or 1.0
    out = {}
    for c in cuts:
        share = sum(blocks[c:]) / total
        out[c] = CutCost(c, head.train_s + (full.train_s - head.train_s) * share,
                         head.eval_s + (full.eval_s - head.eval_s) * share, sum(blocks[:c]))
    return out


def estimate(prep, specs_first: list[TrialSpec], specs_max: list[TrialSpec]) -> Estimate:
    """Measure each distinct suffix the trials of ``specs_max`` train and multiply out the two plans."""
    from transferlab.strategies.base import from_spec

    t0 = time.perf_counter()
    bb, data, budget = prep.backbone, prep.data, prep.config.budget
    by_label = {s.label: from_spec(s.strategy, s.params) for s in [*specs_max, *specs_first]}
    configs = list(by_label.values())
    costs = measure_cuts(bb, data, budget, {_cut(s, bb) for s in configs}, prep.device)
    copy_s = _timed(lambda: copy.deepcopy(bb), "cpu")
    measure_s = time.perf_counter() - t0

    once = _cache_seconds(configs, bb, data, prep, costs)

    def plan_seconds(specs, cfg_budget):
        per = {s.trial_id: _trial_seconds(by_label[s.label], s, prep, costs, cfg_budget, copy_s) for s in specs}
        return per, sum(per.values()) + once

    per_first, first = plan_seconds(specs_first, budget)
    per_max, most = plan_seconds(specs_max, budget)
    labels: dict = {}
    for s in specs_first:
        labels[s.label] = labels.get(s.label, 0.0) + per_first[s.trial_id]
    labels_max: dict = {}
    by_config: dict = {}
    for s in specs_max:
        labels_max[s.label] = labels_max.get(s.label, 0.0) + per_max[s.trial_id]
        by_config.setdefault(f"{s.label} @ {s.n_train}", []).append(per_max[s.trial_id])
    alternatives = {}
    steps = max((budget.plan(len(data.train_indices(s.n_train, s.seed))).steps for s in specs_max), default=0)
    return Estimate(first, most, len(specs_first), len(specs_max), steps, measure_s, prep.device,
                    labels, labels_max, alternatives, {**per_max, **per_first}, parallel=parallel(prep.config, bb, prep.device),
                    once_s=once, per_trial={k: sum(v) / len(v) for k, v in by_config.items()})


def parallel(config, backbone, device: str) -> int:
    """How many trials' measured seconds pass at once: the worker processes of a small model on the CPU, each
    timed as it runs, on one thread (``threads.threads_for``); Ray's tasks, each on its own resources. A larger
    model's workers split the cores it was timed on, and workers on one GPU share it: no faster in sum."""
    from transferlab.threads import threads_for

    workers = config.workers if isinstance(config.workers, int) else 1
    if config.executor == "ray":
        return workers
    small = threads_for(sum(p.numel() for p in backbone.parameters())) == 1
    return workers if config.executor == "process" and small and str(device) == "cpu" else 1


def plan_costs(prep, configs: list):
    """Measure the suffixes ``configs`` train once; returns ``cost(config, configs)``: the worst case (every seed
    to ``max_seeds``) and the first round of that plan in seconds, and the worst case per label (timebudget.py
    weighs many plans on one measurement)."""
    from transferlab.execution import plan

    bb, data = prep.backbone, prep.data
    costs = measure_cuts(bb, data, prep.config.budget, {_cut(s, bb) for s in configs}, prep.device)
    copy_s = _timed(lambda: copy.deepcopy(bb), "cpu")

    def cost(config, cfgs: list) -> tuple[float, float, dict]:
        p, by_label = replace(prep, config=config), {s.label: s for s in cfgs}
        once = _cache_seconds(cfgs, bb, data, p, costs)

        def seconds(specs) -> dict:
            return {s.trial_id: (s.label, _trial_seconds(by_label[s.label], s, p, costs, config.budget, copy_s)) for s in specs}

        worst = seconds(plan(config, cfgs))
        first = seconds(plan(config, cfgs, config.seed_order()[: config.looks()[0]]))
        labels: dict = {}
        for label, sec in worst.values():
            labels[label] = labels.get(label, 0.0) + sec
        return sum(v for _, v in worst.values()) + once, sum(v for _, v in first.values()) + once, labels

    return cost


def _cut(strategy, backbone) -> int:
    cut = strategy.trains_from(backbone)
    return backbone.n_blocks if cut is None else cut


def _trial_seconds(strategy, spec: TrialSpec, prep, costs: dict, budget: Budget, copy_s: float) -> float:
    data, bb, config = prep.data, prep.backbone, prep.config
    n = len(data.train_indices(spec.n_train, spec.seed))
    n_val, n_test = len(data.val), len(data.test)
    cut = strategy.trains_from(bb)
    cost = costs[_cut(strategy, bb)]
    per_candidate = len(strategy.candidates(budget))
    if cut is None:  # closed form on frozen features: the fit is small next to the features it reads
        return per_candidate * (n + n_val) * cost.eval_s + n_test * cost.eval_s
    cached = config.cache and cut > 0
    plan = budget.plan(n)
    steps = candidate_steps(per_candidate, plan.steps, plan.eval_every, config.halving)
    rows, evals = steps * budget.batch_size, steps / plan.eval_every
    seconds = rows * cost.train_s + evals * n_val * cost.eval_s + n_test * cost.eval_s + per_candidate * copy_s
    if not cached and cut > 0:  # the frozen prefix is recomputed every step and every evaluation
        seconds += (rows + evals * n_val) * cost.prefix_s
    if cut < bb.n_blocks and strategy.reuses_weights:  # what moved: two forward passes over validation
        seconds += 2 * n_val * costs[min(costs)].prefix_s + n_val * cost.eval_s
    return seconds


def _cache_seconds(configs, bb, data, prep, costs: dict) -> float:
    """Each cached cut's prefix, once: every augmented view of the pool, validation and test."""
    if not prep.config.cache:
        return 0.0
    views = data.augment.views if data.augment else 1
    cuts = {_cut(s, bb) for s in configs} - {0}
    return sum(costs[c].prefix_s * (views * len(data.train) + len(data.val) + len(data.test)) for c in cuts)
