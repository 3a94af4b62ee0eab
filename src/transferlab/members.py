"""Members trained together: one batched forward and backward pass for several runs.

A trial's learning-rate candidates, and the same configuration's other seeds (``trial.run_seeds``; the study
hands them to one worker together, ``executors.seed_groups``), are copies of one network that differ in their
weights' trajectories: their learning rates and, across seeds, their starting weights, rows and splits.  ``Cohort`` stacks
the members' parameters and calls one copy of the network on the stack with ``torch.func.vmap``, so a step
costs one pass of a wider network instead of one pass per member (JAX's vmapped ensembles; torch.func's
model-ensembling recipe).  Everything else stays each member's own, exactly as when it trains alone
(``fitloop.FitRun``): its optimizer and schedule (the gradients land in its own parameters), its data
stream and augmentation draws, its hooks and penalty, its evaluations, early stopping and checkpoint.  The
members' BatchNorm statistics live in one stacked tensor that each member's buffers are views of, so the
batched pass updates each member's own statistics and a member evaluated alone reads them.  Each member's
dropout masks are its own too (``rng.KeyedDropout``: a hash of its key, which is a stacked buffer like the
statistics); vmap runs with ``randomness="error"``, so a network that draws other random numbers (stochastic
depth, a functional attention dropout), which would come from one stream shared by the members, trains one
member at a time instead, as alone.

A member that ends (converged, halted by successive halving, diverged) leaves the stack; the rest go on.
Where the network cannot be run under ``vmap`` the trial trains its members one at a time and says why.
"""
from __future__ import annotations

import copy
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from transferlab.accel import autocast, move, on_cuda
from transferlab.data.base import take, trim_padding
from transferlab.fitloop import FitRun

AUTO = "auto"


class NotBatchable(Exception):
    """Why these runs train one at a time (the message is recorded with the trial)."""


def batch_mode(setting, device) -> tuple[bool, str]:
    """Whether a study trains each trial's members as one batched model, and why, from the study's
    ``batch_members`` setting ("auto", true or false) and the device."""
    if setting is True:
        return True, "batched: batch_members = true"
    if setting is False:
        return False, "one member at a time: batch_members = false"
    if on_cuda(device):
        return True, ("batched (auto): on a GPU one wide pass keeps the device busy where one small pass per member "
                      "leaves it idle (not yet measured on a GPU here; batch_members = false turns it off)")
    return False, ("one member at a time (auto): on the CPU a batched step measured about as fast as the members' "
                   "own steps, slower for two or three (benchmarks/bench_members.py); batch_members = true forces it")


def _stack(trees: list):
    """Stack members' inputs (a tensor, or a dict/tuple of tensors) along a new first dimension."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: _stack([t[k] for t in trees]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_stack(list(parts)) for parts in zip(*trees))
    return torch.stack(trees)


def _same_draw(a: FitRun, b: FitRun) -> bool:
    """Whether two members drew the same batch (same rows, same augmented views) of the same data."""
    (ia, va), (ib, vb) = a.drawn, b.drawn
    return (a.train is b.train and a.views is b.views and torch.equal(ia, ib)
            and (va is None) == (vb is None) and (va is None or torch.equal(va, vb)))


def _set_buffer(model: nn.Module, name: str, value: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    model.get_submodule(owner)._buffers[leaf] = value


def check(runs: list[FitRun]) -> None:
    """Raise ``NotBatchable`` unless these runs can be one batched model: two or more copies of one network
    on one device, in lockstep (one step plan), with hooks that work on a member's own parameters."""
    if len(runs) < 2:
        raise NotBatchable("a single run")
    first = runs[0]
    for r in runs:
        if r.scaler.is_enabled():
            raise NotBatchable("fp16 loss scaling steps each member's optimizer on its own overflow")
        bad = [type(h).__name__ for h in r.hooks if not getattr(h, "batchable", False)]
        if bad:
            raise NotBatchable(f"hook {bad[0]} is not written for batched members")
        if (r.plan.eval_every, r.plan.limit, str(r.device)) != (first.plan.eval_every, first.plan.limit, str(first.device)):
            raise NotBatchable("the members' step plans or devices differ")
        if [type(m) for m in r.model.modules()] != [type(m) for m in first.model.modules()]:
            raise NotBatchable("the members are not copies of one network")
        if r is not first and {id(p) for p in r.model.parameters() if p.requires_grad} & {
                id(p) for p in first.model.parameters() if p.requires_grad}:
            raise NotBatchable("the members share trainable parameters")
        shapes = [(n, p.shape, p.dtype, p.requires_grad) for n, p in r.model.named_parameters()]
        if shapes != [(n, p.shape, p.dtype, p.requires_grad) for n, p in first.model.named_parameters()]:
            raise NotBatchable("the members' parameters differ in shape or in which train")
        if [(n, b.shape) for n, b in r.model.named_buffers()] != [(n, b.shape) for n, b in first.model.named_buffers()]:
            raise NotBatchable("the members' buffers differ")


class Cohort:
    """Runs of one network trained as one batched model (see the module's docstring).

    Built before any of them trains; from then on each run's ``advance`` and ``finish`` go through here.
    """

    def __init__(self, runs: list[FitRun]):
        check(runs)
        self.runs, self.active = list(runs), list(runs)
        # The network vmap calls: a copy of the first member's, which never trains itself (its parameters and
        # buffers are replaced by the members' stacks on each call) and carries none of the members' hooks.
        self.template = copy.deepcopy(runs[0].model)
        self.amp = autocast(runs[0].device)
        self._try_step()
        self._restack()
        for r in runs:
            r.cohort = self

    # ---- lockstep training ----
    def advance(self, run: FitRun, until_step: int) -> None:
        while not run.done and run.steps_run < until_step:
            self._period()

    def finish(self, run: FitRun, early: bool) -> None:
        if early and not run.done:
            run.result.stop, run.result.converged = "halted", None
            self._leave([run])
        while not run.done:
            self._period()

    def _period(self) -> None:
        members = list(self.active)
        periods = [r.begin_period() for r in members]
        for t, m in zip(self.template.modules(), members[0].model.modules()):  # hooks may freeze or unfreeze
            t.train(m.training)
        self._begin_stacks(members)
        for drawn in zip(*periods):
            self._step(members, [r.inputs(idx, x) for r, (idx, x) in zip(members, drawn)])
        self._leave([r for r in members if r.end_period()])  # every member evaluates: no short-circuit

    def _leave(self, ended: list[FitRun]) -> None:
        for r in ended:
            r.restore()
            r.done = True
            self.active.remove(r)
        if ended and self.active:
            self._restack()
        if not self.active:  # the stacks are the last members' memory: free them before anything else trains
            self.buffers, self.params, self.frozen, self.template = {}, [], {}, None
            for r in self.runs:
                r._periods.close()  # never started in a cohort; its frame holds the run
            self.runs = []

    def _step(self, members: list[FitRun], batch: list[tuple]) -> None:
        shared = all(_same_draw(members[0], r) for r in members[1:])
        xs, ys = zip(*batch)
        x = trim_padding(xs[0] if shared else _stack(list(xs)))
        y = ys[0].repeat(len(members)) if shared else torch.cat(ys)
        for r in members:
            r.opt.zero_grad(set_to_none=True)
        params = {n: torch.stack([p[n] for p in self.params]) if n in self.trained else frozen
                  for n, frozen in self.frozen.items()}
        with self.amp:
            logits, watched = vmap(self._call, in_dims=(0, 0, None if shared else 0), randomness="error")(
                params, self.buffers, x)
        logits = logits.float()
        losses = F.cross_entropy(logits.flatten(0, 1), y, reduction="none").view(len(members), -1).mean(1)
        penalties = [p for p in (r.penalty() for r in members) if p is not None]
        (losses.sum() + sum(penalties) if penalties else losses.sum()).backward()
        for i, r in enumerate(members):
            for h in r.hooks:
                if h.watched_input() is not None:
                    h.on_input_square(watched[i].detach())
            r.update(losses[i], logits[i], ys[0] if shared else ys[i])

    def _call(self, params: dict, buffers: dict, x):
        self._box = []
        out = functional_call(self.template, {**params, **buffers}, (x,))
        return out, (self._box[0] if self._box else out.new_zeros(()))

    # ---- the stacks ----
    def _restack(self) -> None:
        """Stack the active members' buffers and point each member's buffers at its slice."""
        self.buffers = {}
        for name, _ in self.template.named_buffers():
            stacked = torch.stack([r.model.get_buffer(name) for r in self.active])
            for i, r in enumerate(self.active):
                _set_buffer(r.model, name, stacked[i])
            self.buffers[name] = stacked

    def _begin_stacks(self, members: list[FitRun]) -> None:
        """Per period: which parameters train (a hook may change it), the others stacked once; the module whose
        input a member's hook measures (``Hook.watched_input``), measured inside the batched pass."""
        self.params = [dict(r.model.named_parameters()) for r in members]
        self.trained = {n for n, p in self.params[0].items() if p.requires_grad}
        self.frozen = {n: None if n in self.trained else torch.stack([p[n].detach() for p in self.params])
                       for n in self.params[0]}
        names = {m: n for n, m in members[0].model.named_modules()}
        watched = [h.watched_input() for h in members[0].hooks]
        for handle in getattr(self, "_handles", []):
            handle.remove()
        self._handles = [self.template.get_submodule(names[m]).register_forward_pre_hook(self._watch)
                         for m in watched if m is not None and m in names]

    def _watch(self, module, args) -> None:
        if module.training:
            self._box.append(args[0].detach().float().pow(2).mean())

    def _try_step(self) -> None:
        """One batched forward and backward pass on a few validation rows, on copies of the weights and
        statistics (the members are untouched), so a network vmap cannot run is found before anything trains."""
        r = self.runs[0]
        x = take(r.val.inputs, torch.arange(min(4, len(r.val))))
        x = move(x, r.device) if on_cuda(r.device) else x
        self._begin_stacks(self.active)
        params = {n: torch.stack([p[n].detach() for p in self.params]).requires_grad_(p0.requires_grad)
                  for n, p0 in self.params[0].items()}
        buffers = {n: torch.stack([r.model.get_buffer(n).clone() for r in self.active]) for n, _ in self.template.named_buffers()}
        try:
            self.template.train()
            with self.amp:
                out, _ = vmap(self._call, in_dims=(0, 0, None), randomness="error")(params, buffers, trim_padding(x))
            if any(p.requires_grad for p in params.values()):
                out.float().sum().backward()
        except Exception as exc:  # noqa: BLE001 - any failure means: train them one at a time
            if "randomness" in str(exc):
                raise NotBatchable("the network draws random numbers outside nn.Dropout (stochastic depth, attention "
                                   "dropout, ...), which batched members would draw from one shared stream") from None
            raise NotBatchable(f"vmap cannot run this network ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")


# ---- how many members fit ----
MEMORY_SHARE = 0.5  # of the device's free memory a cohort may plan to fill: evaluation, the cache and copies need room


def member_bytes(run: FitRun) -> int:
    """Bytes one member holds while it trains in a cohort, measured on its own network and batch: every weight three
    times (its own, its best-weights snapshot, the cohort's stacked copy), every buffer three times likewise; per
    trained weight four more (its gradient, AdamW's two moments, the stack's gradient); and the activations one
    training step saves for the backward pass, counted on a forward pass of one batch through a copy of the model
    (its statistics, dropout counts and hooks are the copy's, so the member is untouched)."""
    model = run.model
    size = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    held = (3 * size(model.parameters()) + 3 * size(model.buffers())
            + 4 * size(p for p in model.parameters() if p.requires_grad))
    seen: dict = {}

    def pack(t: torch.Tensor):
        seen[(t.data_ptr(), t.shape)] = t.numel() * t.element_size()
        return t

    probe = copy.deepcopy(model).train()
    for m in probe.modules():  # a hook the study or the API attached must not see this pass
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
        m._backward_hooks.clear()
    rows = torch.arange(min(run.budget.batch_size, len(run.train)))
    x = trim_padding(take(run.train.inputs, rows))
    x = move(x, run.device) if on_cuda(run.device) else x
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        out = probe(x)
    weights = {p.data_ptr() for p in probe.parameters()}  # saved for backward, but counted above
    return held + sum(v for (ptr, _), v in seen.items() if ptr not in weights) + size([out])


def free_bytes(device) -> int:
    """Memory free for new tensors: on a GPU the driver's free memory plus what torch's allocator holds unused; on
    the host its available memory (Linux's MemAvailable), or less where a container's memory limit leaves less."""
    if on_cuda(device):
        dev = torch.device(device)
        unused = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)  # cached blocks are free to torch
        return int(torch.cuda.mem_get_info(dev)[0] + max(0, unused))
    host = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
    except OSError:
        pass
    if host is None:
        host = int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    limited = cgroup_free()
    return host if limited is None else min(host, limited)


CGROUP = "/sys/fs/cgroup"  # where the cgroup file systems are mounted


def cgroup_free(folders: list[str] | None = None) -> int | None:
    """Bytes left under the tightest cgroup memory limit over this process's cgroup and its ancestors (a Slurm job,
    a systemd slice, a container): the limit less what is in use, less the inactive file cache, which the kernel
    reclaims first (as ``docker stats`` counts it); None without a limit.  MemAvailable reads the host's memory, so
    under a limit it promises memory the process may not use.  ``folders``: the cgroup folders to read."""
    frees = [f for f in map(_free_under, _cgroup_folders() if folders is None else folders) if f is not None]
    return min(frees) if frees else None


def _cgroup_folders() -> list[str]:
    """This process's cgroup folders (v2, and v1's memory controller), each with its ancestors up to the root."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return [CGROUP, os.path.join(CGROUP, "memory")]
    out = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        base = CGROUP if controllers == "" else os.path.join(CGROUP, "memory") if "memory" in controllers.split(",") else None
        parts = [p for p in path.split("/") if p]
        out += [os.path.join(base, *parts[:k]) for k in range(len(parts), -1, -1)] if base else []
    return out


def _free_under(folder: str) -> int | None:
    """The free bytes under one cgroup folder's memory limit (v2's files, else v1's); None without a limit there."""
    for limit_f, used_f, inactive in (("memory.max", "memory.current", "inactive_file"),
                                     ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")):
        try:
            with open(os.path.join(folder, limit_f)) as f:
                limit = f.read().strip()
            with open(os.path.join(folder, used_f)) as f:
                used = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if not limit.isdigit() or int(limit) >= 1 << 60:  # "max", or v1's "no limit" (a page-rounded 2^63)
            return None
        try:
            with open(os.path.join(folder, "memory.stat")) as f:
                stat = dict(line.split() for line in f if len(line.split()) == 2)
            used -= int(stat.get(inactive, 0))
        except (OSError, ValueError):
            pass
        return max(0, int(limit) - max(0, used))
    return None


def seeds_that_fit(per_seed: int, device, free: int | None = None) -> int:
    """How many seeds of one configuration one cohort takes: ``per_seed`` bytes each (its members'
    ``member_bytes``) within ``MEMORY_SHARE`` of the free memory; at least one (a seed alone trains its candidates
    as it would in any cohort)."""
    free = free_bytes(device) if free is None else free
    return max(1, int(MEMORY_SHARE * free // max(1, per_seed)))


def try_together(runs: list[FitRun]) -> NotBatchable | None:
    """Make ``runs`` one cohort if they can be; else the reason they train one at a time."""
    try:
        Cohort(runs)
    except NotBatchable as why:
        return why
    return None


def describe(runs: list[FitRun], why: NotBatchable | None, seeds: tuple = ()) -> str:
    """What was done with a trial's runs, for its record: batched (how many members, with which seeds: the cohort
    that regenerates it), or why not."""
    if why is not None:
        return f"one at a time: {why}"
    return f"batched: {len(runs)} members" + (f" (seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else "")
