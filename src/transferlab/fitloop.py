"""The one training loop: ``fit`` and ``FitRun``, with a few hooks.

``fit`` draws batches from a stream of shuffled passes over the training subset (a batch spans two passes when
the subset is smaller than a batch, so every batch is full), evaluates the validation split every
``eval_every`` steps, keeps the weights of the best evaluation, and stops when the run has converged:
validation has not improved for ``patience`` evaluations and the training loss is flat.  A run still
improving when its step budget is spent goes on, up to ``extend`` times the budget, so no arm (scratch least
of all) is stopped while it still learns.  Each run records whether it converged.
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.accel import autocast, grad_scaler, move, on_cuda, prepare_model
from transferlab.data.base import Split, trim_padding
from transferlab.data.imagestore import batches, in_order
from transferlab.rng import OwnRng, key_dropout
from transferlab.training import SCHEDULES, Budget

FLAT = 0.05  # the training loss is flat when its last patience window fell by under 5% of its fall so far
GAIN = 0.01  # a validation improvement that resets patience: higher accuracy, or 1% lower loss at no worse accuracy


@dataclass
class EvalLog:
    """One evaluation: the step it came after, the mean training loss and accuracy since the last one, validation."""

    step: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


@dataclass
class FitResult:
    history: list[EvalLog] = field(default_factory=list)
    best_step: int = 0
    best_val_acc: float = float("nan")
    best_val_loss: float = float("nan")
    diverged_step: int | None = None
    steps_run: int = 0
    budget_steps: int = 0
    converged: bool | None = None  # None: not trained by this loop's rule (halted by successive halving)
    stop: str = ""  # converged | plateau (train loss still falling) | limit (still improving) | halted | diverged


class Hook:
    """Called by ``fit``; override what you need. A period is the steps between two evaluations.

    ``batchable``: the hook reads and changes only the model it is given (its own member's), so its run may
    train with others as one batched model (``members.Cohort``)."""

    batchable = False

    def on_period_start(self, period: int, model: nn.Module) -> None: ...

    def on_after_backward(self, model: nn.Module) -> None: ...

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to this step's loss (a regulariser such as L2-SP), or None. The logged train loss
        stays the cross-entropy, so curves compare across strategies."""
        return None

    def on_period_end(self, log: EvalLog) -> None: ...

    def watched_input(self) -> nn.Module | None:
        """A module whose training input's mean square this hook wants each step (``on_input_square``), or None.
        Alone, a hook may measure it with a forward hook; in a batched cohort the cohort measures it."""
        return None

    def on_input_square(self, value: torch.Tensor) -> None: ...


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 512, device="cpu",
             correct_rows: list | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``split``; ``correct_rows``: a list that receives whether
    each example, in the split's order, was classified correctly (the test interval's per-example term)."""
    model.eval()
    total_loss, correct, n = 0.0, 0, len(split)
    gpu, amp = on_cuda(device), autocast(device)
    for idx, x in in_order(split.inputs, batch_size):
        y = split.y[idx]
        x = trim_padding(x)  # on the host, before the copy: no device sync
        if gpu:
            x, y = move(x, device), move(y, device)
        with amp:
            logits = model(x).float()
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        hit = logits.argmax(1) == y
        correct += hit.sum().item()
        if correct_rows is not None:
            correct_rows.extend(hit.cpu().tolist())
    return total_loss / n, correct / n


def loss_flat(history: Sequence[EvalLog], window: int) -> bool:
    """Whether training has little left to fit: the mean training loss of the last ``window`` evaluations fell,
    against the window before, by less than FLAT of its whole fall since the first evaluation (diminishing
    returns; or by under 0.01), or every training example of the window was classified correctly (on a fitted
    training set cross-entropy falls for ever by growing the logits, which changes no prediction). Needs two
    windows of trained evaluations."""
    trained = [h for h in history if h.step > 0]
    if len(trained) < 2 * window:
        return False
    if all(h.train_acc >= 1.0 for h in trained[-window:]):
        return True
    losses = [h.train_loss for h in trained]
    last, prev = sum(losses[-window:]) / window, sum(losses[-2 * window:-window]) / window
    return prev - last <= max(FLAT * (losses[0] - last), 0.01)


def batch_stream(n: int, batch_size: int, generator: torch.Generator):
    """Indices of successive batches: shuffled passes over ``n`` examples, cut into full batches across passes
    (a subset smaller than a batch is drawn more than once per batch, as BiT does)."""
    pending = torch.empty(0, dtype=torch.long)
    while True:
        while len(pending) < batch_size:
            pending = torch.cat([pending, torch.randperm(n, generator=generator)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def fit(model: nn.Module, groups: list[dict], train: Split, val: Split, budget: Budget,
        generator: torch.Generator, hooks: Sequence[Hook] = (), views=None, device="cpu",
        log0: EvalLog | None = None, rng_seed: int | None = None) -> FitResult:
    """Train with AdamW until converged (see the module's docstring); restore the best evaluation's weights.

    ``views``: the training inputs' augmented views (``data.augment``); each example in a batch is shown
    one view, drawn from ``generator``.  ``log0`` is an already-measured step-0 entry (a probe that
    initialises the head): it is recorded, and the checkpoint and the patience window count only the
    evaluations trained here, so a run cannot end at its starting point.  ``rng_seed``: the seed of the run's own
    dropout masks and other random draws (``rng``; default the generator's seed), so its record is the same
    whatever trains beside it.
    """
    return FitRun(model, groups, train, val, budget, generator, hooks, views, device, log0, rng_seed).finish()


class FitRun:
    """One ``fit`` that can be advanced step by step (successive halving trains candidates in rungs).

    Run to the end in one go, it is exactly ``fit``.  Stopped early (``finish(early=True)``), it restores the
    weights of its best evaluation so far.  Its pieces (``begin_period``, ``inputs``, ``penalty``, ``update``,
    ``end_period``) are what one step and one evaluation do; ``members.Cohort`` drives several runs with them,
    one batched forward and backward pass for all.
    """

    def __init__(self, model, groups, train, val, budget, generator, hooks=(), views=None, device="cpu", log0=None,
                 rng_seed: int | None = None):
        self.plan = budget.plan(len(train))
        self.result = FitResult(history=[log0] if log0 else [], budget_steps=self.plan.steps)
        self.model, self.train, self.val, self.budget = prepare_model(model, device), train, val, budget
        self.rng_seed = generator.initial_seed() if rng_seed is None else rng_seed
        key_dropout(self.model, self.rng_seed)  # its dropout masks are its own, alone or batched (rng.py)
        self.rng = OwnRng(self.rng_seed, device)
        self.generator, self.hooks, self.views, self.device = generator, tuple(hooks), views, device
        self.opt = make_optimizer([g for g in groups if g["params"]], budget.weight_decay)
        self.scaler = grad_scaler(device)
        self.schedule = SCHEDULES[budget.schedule](self.opt, self.plan.limit)
        self.stream = batch_stream(len(train), budget.batch_size, generator)
        self.read = views is None or views.reads_inputs  # cached views hold their inputs already
        self.best_key, self.ref, self.best_state, self.stale, self.period = (-1.0, 0.0), (-1.0, math.inf), None, 0, 0
        self.cohort = None  # a members.Cohort that trains this run with others, or None (alone)
        self.done = False
        self._periods = self._run()

    @property
    def steps_run(self) -> int:
        return self.result.steps_run

    def advance(self, until_step: int) -> FitRun:
        """Train up to ``until_step`` steps, in whole evaluation periods (or fewer, if the run ends)."""
        if self.cohort is not None:
            self.cohort.advance(self, until_step)
            return self
        while not self.done and self.result.steps_run < until_step:
            if next(self._periods, None) is None:
                self.done = True
        return self

    def finish(self, early: bool = False) -> FitResult:
        """Train until the run ends, or (``early``) stop here; either way load the best weights."""
        if self.cohort is not None:
            self.cohort.finish(self, early)
        elif early and not self.done:
            self.result.stop, self.result.converged = "halted", None
            self._periods.close()
        else:
            for _ in self._periods:
                pass
        self.done = True
        return self.result

    # ---- the pieces of a period and a step ----
    def begin_period(self):
        """Start an evaluation period: hooks, train mode, and the period's batches as (indices, inputs or None)."""
        self._t0, self.period = time.perf_counter(), self.period + 1
        for h in self.hooks:
            h.on_period_start(self.period, self.model)
        self.model.train()
        # Per-step values stay tensors on the device: no host sync and no extra op per step.
        self._losses, self._corrects, self._seen = [], [], 0
        chunks = [next(self.stream) for _ in range(min(self.plan.eval_every, self.plan.limit - self.result.steps_run))]
        self._n_chunks = len(chunks)
        return zip(chunks, batches(self.train.inputs, chunks) if self.read else chunks)

    def inputs(self, idx, x):
        """One batch's inputs (augmented on the training device) and labels; ``self.drawn`` names what was drawn."""
        views = None
        if self.views is not None:
            views = torch.randint(self.views.views, (len(idx),), generator=self.generator)
            x = self.views.batch(idx, views, x if self.read else None, self.device)
        self.drawn = (idx, views)
        y = self.train.y[idx]
        if self.cohort is None:  # a cohort cuts its members' inputs together, once stacked
            x = trim_padding(x)
        if on_cuda(self.device):
            x, y = move(x, self.device), move(y, self.device)
        return x, y

    def penalty(self) -> torch.Tensor | None:
        terms = [t for t in (h.penalty(self.model) for h in self.hooks) if t is not None]
        return sum(terms) if terms else None

    def update(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """After the backward pass: hooks, the optimizer and schedule step, and the step's loss and hits."""
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.opt)  # hooks read true gradients
        for h in self.hooks:
            h.on_after_backward(self.model)
        self.scaler.step(self.opt)  # skipped when an fp16 gradient overflowed
        self.scaler.update()
        self.schedule.step()
        self._losses.append(loss.detach() * len(y))
        self._corrects.append((logits.detach().argmax(-1) == y).sum())
        self._seen += len(y)

    def end_period(self) -> bool:
        """Evaluate, keep the best weights, and decide: True when the run has ended (its ``stop`` says why)."""
        result, budget = self.result, self.budget
        result.steps_run = step = result.steps_run + self._n_chunks
        train_loss = float(torch.stack(self._losses).sum()) / self._seen
        if not math.isfinite(train_loss):  # checked once a period; the period's updates are discarded below
            result.diverged_step, result.stop, result.converged = step, "diverged", False
            return True
        val_loss, val_acc = evaluate(self.model, self.val, budget.eval_batch_size, self.device)
        log = EvalLog(step, train_loss, int(torch.stack(self._corrects).sum()) / self._seen, val_loss, val_acc,
                      time.perf_counter() - self._t0)
        result.history.append(log)
        for h in self.hooks:
            h.on_period_end(log)
        if not math.isfinite(val_loss):
            result.diverged_step, result.stop, result.converged = step, "diverged", False
            return True
        if (val_acc, -val_loss) > self.best_key:
            self.best_key, self.best_state = (val_acc, -val_loss), _snapshot(self.model)
            result.best_step, result.best_val_acc, result.best_val_loss = step, val_acc, val_loss
        # Patience restarts only on a real improvement: a tiny validation set's loss creeps down for
        # hundreds of steps after its accuracy has settled.
        if val_acc > self.ref[0] or (val_acc >= self.ref[0] and val_loss < self.ref[1] * (1 - GAIN)):
            self.ref, self.stale = (max(val_acc, self.ref[0]), min(val_loss, self.ref[1])), 0
        else:
            self.stale += 1
        plateau = self.stale >= budget.patience
        flat = plateau and loss_flat(result.history, budget.patience)
        result.converged = flat
        if plateau and (flat or step >= self.plan.steps):
            result.stop = "converged" if flat else "plateau"
            return True
        if step >= self.plan.limit:
            result.stop = "limit"
            return True
        return False

    def restore(self) -> None:
        """Load the best evaluation's weights (the run has ended, or stops here), then free what only training
        needs (the optimizer's moments, the snapshot now loaded): a trial's other candidates and its grid
        extensions train while this run's record and model wait for the choice."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.best_state = None
        self.opt.state.clear()
        for p in self.model.parameters():
            p.grad = None

    def release(self) -> None:
        """Drop the network, optimizer and data of an ended run whose candidate lost; its ``result`` stays."""
        if self.done and (self.cohort is None or not self.cohort.runs):  # alone, or its cohort has ended
            self.model = self.opt = self.schedule = self.train = self.val = self.views = self._periods = None
            self.hooks, self.best_state = (), None

    def _run(self):
        model, amp = self.model, autocast(self.device)
        try:
            while True:
                with self.rng.active():  # other runs may train between its periods (halving, a trial's candidates)
                    for idx, x in self.begin_period():
                        x, y = self.inputs(idx, x)
                        with amp:
                            logits = model(x)
                            loss = F.cross_entropy(logits.float(), y)
                        self.opt.zero_grad(set_to_none=True)
                        penalty = self.penalty()
                        self.scaler.scale(loss + penalty if penalty is not None else loss).backward()
                        self.update(loss, logits, y)
                    ended = self.end_period()
                if ended:
                    return
                yield self.result.steps_run
        finally:
            self.restore()


def make_optimizer(groups: list[dict], weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, fused into one kernel where this torch build has one for the parameters' device.

    The fused step reads each parameter once instead of once per elementwise op: on 2 CPU cores
    it takes a fifth of the time of the default multi-tensor step for resnet10t.
    """
    try:
        return torch.optim.AdamW(groups, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(groups, weight_decay=weight_decay)


def _snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
