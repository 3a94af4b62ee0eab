"""The one training loop, and the plain functions that set learning rates.

``fit`` trains a model on a train split, evaluates the validation split each
epoch, keeps the weights of the best validation epoch and stops early when the
validation accuracy has not improved for ``patience`` epochs.  Strategies vary
only what they pass in: which parameters train, at which learning rates, and
hooks that act at the start of an epoch (gradual unfreezing).
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


@dataclass(frozen=True)
class Budget:
    """What every strategy gets, scratch included: the same epochs, patience and LR grid."""

    epochs: int = 30
    patience: int = 6
    batch_size: int = 32
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decay: float = 1e-4
    eval_batch_size: int = 512
    schedule: str = "constant"  # a key of SCHEDULES: how each group's LR moves over the run

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown LR schedule '{self.schedule}'{closest(self.schedule, SCHEDULES)}",
                            f"choose one of: {', '.join(SCHEDULES)}")

    def to_dict(self) -> dict:
        return asdict(self)


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
@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float


@dataclass
class FitResult:
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = float("nan")
    best_val_loss: float = float("nan")
    diverged_epoch: int | None = None


class Hook:
    """Called by ``fit``; override what you need."""

    def on_epoch_start(self, epoch: int, model: nn.Module) -> None: ...

    def on_after_backward(self, model: nn.Module) -> None: ...

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A term added to this step's loss (a regulariser such as L2-SP), or None. The logged train loss
        stays the cross-entropy, so curves compare across strategies."""
        return None

    def on_epoch_end(self, log: EpochLog) -> None: ...


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


def fit(model: nn.Module, groups: list[dict], train: Split, val: Split, budget: Budget,
        generator: torch.Generator, hooks: Sequence[Hook] = (), views=None, device="cpu",
        log0: EpochLog | None = None) -> FitResult:
    """Train with AdamW; restore the weights of the best validation epoch.

    ``views``: the training inputs' augmented views (``data.augment``); each epoch every example is
    shown one view, drawn from ``generator``.  ``log0`` is an already-measured epoch-0 entry (a probe
    that initialises the head): it is recorded, and the checkpoint and the patience window count only
    the epochs trained here, so a run cannot end at its starting point.
    """
    return FitRun(model, groups, train, val, budget, generator, hooks, views, device, log0).finish()


class FitRun:
    """One ``fit`` that can be advanced epoch by epoch (successive halving trains candidates in steps).

    Run to the end in one go, it is exactly ``fit``.  Stopped early (``finish``), it restores the
    weights of its best epoch so far.
    """

    def __init__(self, model, groups, train, val, budget, generator, hooks=(), views=None, device="cpu", log0=None):
        self.result = FitResult(history=[log0] if log0 else [])
        self.epochs_run = 0
        self._steps = self._run(model, groups, train, val, budget, generator, hooks, views, device)
        self.done = False

    def advance(self, until_epoch: int) -> FitRun:
        """Train up to epoch ``until_epoch`` (or less, if it stops early)."""
        while not self.done and self.epochs_run < until_epoch:
            if next(self._steps, None) is None:
                self.done = True
        return self

    def finish(self, early: bool = False) -> FitResult:
        """Train to the end of the budget, or (``early``) stop here; either way load the best weights."""
        if early:
            self._steps.close()
        else:
            for _ in self._steps:
                pass
        self.done = True
        return self.result

    def _run(self, model, groups, train, val, budget, generator, hooks, views, device):
        result = self.result
        model = prepare_model(model, device)
        gpu, amp = on_cuda(device), autocast(device)
        opt = make_optimizer([g for g in groups if g["params"]], budget.weight_decay)
        scaler = grad_scaler(device)
        n = len(train)
        schedule = SCHEDULES[budget.schedule](opt, budget.epochs * math.ceil(n / budget.batch_size))
        best_key, best_state, stale = (-1.0, 0.0), None, 0
        try:
            for epoch in range(1, budget.epochs + 1):
                t0 = time.perf_counter()
                for h in hooks:
                    h.on_epoch_start(epoch, model)
                model.train()
                # Per-step values stay tensors on the device: no host sync and no extra op per step.
                losses, corrects, sizes = [], [], []
                order = torch.randperm(n, generator=generator)
                view = torch.randint(views.views, (n,), generator=generator) if views is not None else None
                chunks = list(order.split(budget.batch_size))
                read = views is None or views.reads_inputs  # cached views hold their inputs already
                for idx, x in zip(chunks, batches(train.inputs, chunks) if read else chunks):
                    if views is not None:  # augmented on the training device
                        x = views.batch(idx, view[idx], x if read else None, device)
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
                    losses.append(loss.detach())
                    corrects.append((logits.detach().argmax(1) == y).sum())
                    sizes.append(len(y))
                self.epochs_run = epoch
                train_loss = float((torch.stack(losses).cpu() * torch.tensor(sizes)).sum()) / n
                if not math.isfinite(train_loss):  # checked once an epoch; the epoch's updates are discarded below
                    result.diverged_epoch = epoch
                    return
                val_loss, val_acc = evaluate(model, val, budget.eval_batch_size, device)
                log = EpochLog(epoch, train_loss, int(torch.stack(corrects).sum()) / n, val_loss, val_acc, time.perf_counter() - t0)
                result.history.append(log)
                for h in hooks:
                    h.on_epoch_end(log)
                if not math.isfinite(val_loss):
                    result.diverged_epoch = epoch
                    return
                if (val_acc, -val_loss) > best_key:
                    best_key, best_state, stale = (val_acc, -val_loss), _snapshot(model), 0
                    result.best_epoch, result.best_val_acc, result.best_val_loss = epoch, val_acc, val_loss
                else:
                    stale += 1
                    if stale >= budget.patience:
                        return
                yield epoch
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
