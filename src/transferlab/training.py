"""What every strategy gets, scratch included: the step budget, the LR schedules, and the plain functions that set
learning rates.

The budget is optimizer steps, not epochs (BiT, VTAB, Kornblith et al. 2019): at 5 examples per class an
epoch is one step, so an epoch budget starves small data sets.  The loop that spends it is ``fitloop.py``.
Strategies vary only what they pass in: which parameters train, at which learning rates, and hooks (gradual
unfreezing, a penalty).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from transferlab.data.imagestore import in_order
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


def batched(fn, inputs, batch_size: int = 512):
    """Apply ``fn`` to ``inputs`` in batches and concatenate (used for feature extraction)."""
    from transferlab.data.base import concat

    return concat([fn(x) for _, x in in_order(inputs, batch_size)])
