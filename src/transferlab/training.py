"""The one training loop, and the plain functions that set learning rates.

The budget is optimizer steps, not epochs (BiT, VTAB, Kornblith et al. 2019): at 5 examples per class an
epoch is one step, so an epoch budget starves small data sets. ``fit`` draws batches from a stream of shuffled
passes over the training subset (a batch spans two passes when the subset is smaller than a batch, so every
batch is full), evaluates the validation split every ``eval_every`` steps, keeps the weights of the best
evaluation, and stops when the run has converged: validation has not improved for ``patience`` evaluations
and the training loss is flat.  A run still improving when its step budget is spent goes on, up to
``extend`` times the budget, so no arm (scratch least of all) is stopped while it still learns.  Each run
records whether it converged.  Strategies vary only what they pass in: which parameters train, at which
learning rates, and hooks (gradual unfreezing, a penalty).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.accel import autocast, grad_scaler, move, on_cuda, prepare_model
from transferlab.data.base import Split
from transferlab.data.imagestore import batches, in_order
from transferlab.errors import UserError, closest


DEFAULT_EPOCHS = 30  # the default budget in passes over the training subset, before the step floor


@dataclass(frozen=True)
class Budget:
    """What every strategy gets, scratch included: the same step budget, convergence rule and LR grid.

    The step budget of one candidate is ``steps`` if set; else ``epochs`` passes over its training subset if
    set (honoured as given: the convergence record shows whether it sufficed); else the default, 30 passes and
    at least ``min_steps``.  The floor is BiT's HyperRule (every data set under 20k examples gets 500 steps):
    at 5 examples per class 30 passes are 30 steps, which left scratch 19 points short of its converged
    accuracy on the demo, while 500 steps of batch 32 show each of 25 examples about 640 times.
    """

    steps: int | None = None
    epochs: int | None = None
    min_steps: int = 500
    patience: int = 8  # evaluations without a real validation improvement (and a flat training loss) end a run
    eval_every: int | None = None  # steps between validations; None: one pass, between budget/40 and 250 steps
    # A run still improving at its budget goes on, up to this many budgets (constant schedule). None: 4 for the
    # default budget, 1 for one given as ``steps`` or ``epochs`` (then exactly as given; the record shows whether
    # it sufficed).
    extend: int | None = None
    batch_size: int = 32
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    grid_extensions: int = 2  # times a chosen value on an edge of its grid extends the grid beyond that edge
    weight_decay: float = 1e-4
    eval_batch_size: int = 512
    schedule: str = "constant"  # a key of SCHEDULES: how each group's LR moves over the run

    def __post_init__(self):
        if not isinstance(self.schedule, str) or self.schedule not in SCHEDULES:
            raise UserError(f"unknown LR schedule '{self.schedule}'{closest(str(self.schedule), SCHEDULES)}",
                            f"choose one of: {', '.join(SCHEDULES)}")
        for name in ("steps", "epochs", "eval_every", "extend"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise UserError(f"budget {name} {v!r} is not a positive whole number", f"use for example {name} = 500"
                                if name == "steps" else f"use a positive whole number for {name}, or leave it out")
        for name in ("min_steps", "patience", "batch_size", "eval_batch_size", "grid_extensions"):
            v = getattr(self, name)
            low = 0 if name in ("min_steps", "grid_extensions") else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise UserError(f"budget {name} {v!r} is not a whole number of at least {low}",
                                f"use for example {name} = {getattr(Budget, name)}")
        if self.steps is not None and self.epochs is not None:
            raise UserError(f"the budget gives both steps ({self.steps}) and epochs ({self.epochs})",
                            "give one: steps for optimizer steps, epochs for passes over the training subset")
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or not 0 <= self.weight_decay < 1:
            raise UserError(f"budget weight_decay {self.weight_decay!r} is not a number in [0, 1)", "use for example weight_decay = 1e-4")
        if not isinstance(self.lrs, (tuple, list)) or not self.lrs or any(
                isinstance(x, bool) or not (isinstance(x, (int, float)) and 0 < x < math.inf) for x in self.lrs):
            raise UserError(f"learning-rate grid {self.lrs!r} needs positive numbers", "use for example lrs = [1e-3, 3e-3, 1e-2]")

    def plan(self, n_train: int) -> StepPlan:
        """The step budget, the evaluation period and the hard limit of one candidate on ``n_train`` examples."""
        per_pass = max(1, math.ceil(n_train / self.batch_size))
        if self.steps is not None:
            steps = self.steps
        elif self.epochs is not None:
            steps = self.epochs * per_pass
        else:
            steps = max(self.min_steps, DEFAULT_EPOCHS * per_pass)
        every = self.eval_every or min(max(per_pass, math.ceil(steps / 40)), 250)
        every = min(every, steps)
        limit = steps * self.extension if self.schedule == "constant" else steps  # an annealed LR has ended by then
        return StepPlan(steps, every, limit)

    @property
    def extension(self) -> int:
        if self.extend is not None:
            return self.extend
        return 1 if self.steps is not None or self.epochs is not None else 4

    def rule(self) -> str:
        """The budget and convergence rule in words, for the report's header."""
        if self.steps is not None:
            size = f"{self.steps} optimizer steps"
        elif self.epochs is not None:
            size = f"{self.epochs} passes over the training subset, in optimizer steps"
        else:
            size = f"{DEFAULT_EPOCHS} passes over the training subset and at least {self.min_steps} optimizer steps"
        grow = (f"a run still improving at its budget goes on, up to {self.extension}x the budget, so no arm (scratch "
                f"included) is stopped while it improves" if self.extension > 1 and self.schedule == "constant"
                else "runs end at their budget, as given, and the convergence table shows whether it sufficed")
        return (f"{size} per candidate, batch {self.batch_size}; validation every "
                f"{self.eval_every or 'pass (at least budget/40 steps)'}{' steps' if self.eval_every else ''}; "
                f"a run has converged when validation has not improved for {self.patience} evaluations and its "
                f"training loss is flat; {grow}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StepPlan:
    steps: int  # the budget
    eval_every: int
    limit: int  # the most steps a run that keeps improving may take


# ---- learning-rate schedules: each group's LR as a function of the step ----
def _one_cycle(opt: torch.optim.Optimizer, total_steps: int):
    # fastai's fit_one_cycle: warm up over the first quarter from lr/25, cosine down to lr/1e5,
    # Adam's beta1 cycled 0.95 -> 0.85 -> 0.95.
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=total_steps,
                                               pct_start=0.25, div_factor=25.0, final_div_factor=1e5)


def _cosine(opt: torch.optim.Optimizer, total_steps: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)


def _constant(opt: torch.optim.Optimizer, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


SCHEDULES = {"constant": _constant, "onecycle": _one_cycle, "cosine": _cosine}


# ---- learning rates and freezing as functions of the block index ------------
def block_lr(i: int, n_blocks: int, head_lr: float, body_lr_mult: float, layer_decay: float = 1.0) -> float:
    """LR of body block ``i`` (0 = nearest the input): head_lr * mult * decay^(depth below the head)."""
    return head_lr * body_lr_mult * layer_decay ** (n_blocks - 1 - i)


def param_groups(blocks: Sequence[nn.Module], head: nn.Module, head_lr: float, body_lr_mult: float = 1.0,
                 layer_decay: float = 1.0) -> list[dict]:
    """One optimizer group per block (trainable parameters only) plus the head.

    ``blocks`` are all the backbone's blocks, so the decay counts depth below the head in the whole model
    (frozen blocks have no trainable parameters and get no group).
    """
    n = len(blocks)
    groups = []
    for j, block in enumerate(blocks):
        params = [p for p in block.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": block_lr(j, n, head_lr, body_lr_mult, layer_decay)})
    groups.append({"params": [p for p in head.parameters() if p.requires_grad], "lr": head_lr})
    return groups


# ---- the loop ---------------------------------------------------------------
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
    """Called by ``fit``; override what you need. A period is the steps between two evaluations."""

    def on_period_start(self, period: int, model: nn.Module) -> None: ...

    def on_after_backward(self, model: nn.Module) -> None: ...

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to this step's loss (a regulariser such as L2-SP), or None. The logged train loss
        stays the cross-entropy, so curves compare across strategies."""
        return None

    def on_period_end(self, log: EvalLog) -> None: ...


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 512, device="cpu") -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``split``."""
    model.eval()
    total_loss, correct, n = 0.0, 0, len(split)
    gpu, amp = on_cuda(device), autocast(device)
    for idx, x in in_order(split.inputs, batch_size):
        y = split.y[idx]
        if gpu:
            x, y = move(x, device), move(y, device)
        with amp:
            logits = model(x).float()
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
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
        log0: EvalLog | None = None) -> FitResult:
    """Train with AdamW until converged (see the module's docstring); restore the best evaluation's weights.

    ``views``: the training inputs' augmented views (``data.augment``); each example in a batch is shown
    one view, drawn from ``generator``.  ``log0`` is an already-measured step-0 entry (a probe that
    initialises the head): it is recorded, and the checkpoint and the patience window count only the
    evaluations trained here, so a run cannot end at its starting point.
    """
    return FitRun(model, groups, train, val, budget, generator, hooks, views, device, log0).finish()


class FitRun:
    """One ``fit`` that can be advanced step by step (successive halving trains candidates in rungs).

    Run to the end in one go, it is exactly ``fit``.  Stopped early (``finish(early=True)``), it restores the
    weights of its best evaluation so far.
    """

    def __init__(self, model, groups, train, val, budget, generator, hooks=(), views=None, device="cpu", log0=None):
        self.plan = budget.plan(len(train))
        self.result = FitResult(history=[log0] if log0 else [], budget_steps=self.plan.steps)
        self._periods = self._run(model, groups, train, val, budget, generator, hooks, views, device)
        self.done = False

    @property
    def steps_run(self) -> int:
        return self.result.steps_run

    def advance(self, until_step: int) -> FitRun:
        """Train up to ``until_step`` steps, in whole evaluation periods (or fewer, if the run ends)."""
        while not self.done and self.result.steps_run < until_step:
            if next(self._periods, None) is None:
                self.done = True
        return self

    def finish(self, early: bool = False) -> FitResult:
        """Train until the run ends, or (``early``) stop here; either way load the best weights."""
        if early and not self.done:
            self.result.stop, self.result.converged = "halted", None
            self._periods.close()
        else:
            for _ in self._periods:
                pass
        self.done = True
        return self.result

    def _run(self, model, groups, train, val, budget, generator, hooks, views, device):
        result, plan = self.result, self.plan
        model = prepare_model(model, device)
        gpu, amp = on_cuda(device), autocast(device)
        opt = make_optimizer([g for g in groups if g["params"]], budget.weight_decay)
        scaler = grad_scaler(device)
        schedule = SCHEDULES[budget.schedule](opt, plan.limit)
        stream = batch_stream(len(train), budget.batch_size, generator)
        read = views is None or views.reads_inputs  # cached views hold their inputs already
        best_key, ref, best_state, stale, step, period = (-1.0, 0.0), (-1.0, math.inf), None, 0, 0, 0
        try:
            while step < plan.limit:
                t0, period = time.perf_counter(), period + 1
                for h in hooks:
                    h.on_period_start(period, model)
                model.train()
                # Per-step values stay tensors on the device: no host sync and no extra op per step.
                losses, corrects, seen = [], [], 0
                chunks = [next(stream) for _ in range(min(plan.eval_every, plan.limit - step))]
                for idx, x in zip(chunks, batches(train.inputs, chunks) if read else chunks):
                    if views is not None:  # augmented on the training device
                        x = views.batch(idx, torch.randint(views.views, (len(idx),), generator=generator),
                                        x if read else None, device)
                    y = train.y[idx]
                    if gpu:
                        x, y = move(x, device), move(y, device)
                    with amp:
                        logits = model(x)
                        loss = F.cross_entropy(logits.float(), y)
                    opt.zero_grad(set_to_none=True)
                    terms = [t for t in (h.penalty(model) for h in hooks) if t is not None]
                    scaler.scale(loss + sum(terms) if terms else loss).backward()
                    if scaler.is_enabled():
                        scaler.unscale_(opt)  # hooks read true gradients
                    for h in hooks:
                        h.on_after_backward(model)
                    scaler.step(opt)  # skipped when an fp16 gradient overflowed
                    scaler.update()
                    schedule.step()
                    losses.append(loss.detach() * len(y))
                    corrects.append((logits.detach().argmax(1) == y).sum())
                    seen += len(y)
                step += len(chunks)
                result.steps_run = step
                train_loss = float(torch.stack(losses).sum()) / seen
                if not math.isfinite(train_loss):  # checked once a period; the period's updates are discarded below
                    result.diverged_step, result.stop, result.converged = step, "diverged", False
                    return
                val_loss, val_acc = evaluate(model, val, budget.eval_batch_size, device)
                log = EvalLog(step, train_loss, int(torch.stack(corrects).sum()) / seen, val_loss, val_acc,
                              time.perf_counter() - t0)
                result.history.append(log)
                for h in hooks:
                    h.on_period_end(log)
                if not math.isfinite(val_loss):
                    result.diverged_step, result.stop, result.converged = step, "diverged", False
                    return
                if (val_acc, -val_loss) > best_key:
                    best_key, best_state = (val_acc, -val_loss), _snapshot(model)
                    result.best_step, result.best_val_acc, result.best_val_loss = step, val_acc, val_loss
                # Patience restarts only on a real improvement: a tiny validation set's loss creeps down for
                # hundreds of steps after its accuracy has settled.
                if val_acc > ref[0] or (val_acc >= ref[0] and val_loss < ref[1] * (1 - GAIN)):
                    ref, stale = (max(val_acc, ref[0]), min(val_loss, ref[1])), 0
                else:
                    stale += 1
                plateau = stale >= budget.patience
                flat = plateau and loss_flat(result.history, budget.patience)
                result.converged = flat
                if plateau and (flat or step >= plan.steps):
                    result.stop = "converged" if flat else "plateau"
                    return
                yield step
            result.stop = "limit"
        finally:
            if best_state is not None:
                model.load_state_dict(best_state)


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


def batched(fn, inputs, batch_size: int = 512):
    """Apply ``fn`` to ``inputs`` in batches and concatenate (used for feature extraction)."""
    from transferlab.data.base import concat

    return concat([fn(x) for _, x in in_order(inputs, batch_size)])
