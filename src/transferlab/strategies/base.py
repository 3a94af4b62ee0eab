"""Strategy registry, the trial context, and the helper every gradient strategy shares.

A strategy is a frozen dataclass of hyperparameters (nothing else) registered
under a unique name.  ``candidates`` lists the hyperparameter values it tunes
on validation, always as many as the budget's learning-rate grid so every
strategy, scratch included, gets the same tuning budget.  ``fit`` trains one
candidate and returns a ``Fitted``; the runner chooses among candidates on
validation and evaluates the test split once.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from transferlab.backbones.base import Backbone, count_trainable
from transferlab.cache import FeatureCache
from transferlab.data.base import Split, TargetData, take
from transferlab.errors import UserError, closest
from transferlab.registry import Registry
from transferlab.results import label
from transferlab.rng import key_dropout, member_seed
from transferlab.fitloop import EvalLog, FitResult, FitRun, Hook, evaluate
from transferlab.training import Budget

STRATEGIES = Registry("strategy", "transferlab.strategies", "transferlab.strategies")


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator. A second strategy with the same name is an error, not a silent override."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    return STRATEGIES.register(cls.name, cls)


def registry() -> dict[str, type[Strategy]]:
    return STRATEGIES.entries()


def list_strategies() -> list[str]:
    return STRATEGIES.names()


def from_spec(name: str, params: dict | None = None) -> Strategy:
    cls = STRATEGIES.get(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(params or {}) - fields
    if unknown:
        bad = sorted(unknown)[0]
        raise UserError(f"strategy '{name}' has no parameter '{bad}'{closest(bad, fields)}",
                        f"its parameters are: {', '.join(sorted(fields)) or 'none'}")
    given = dict(params or {})
    for f in dataclasses.fields(cls):
        if f.name in given and not (f.name == cls.depth_param and given[f.name] == EACH):  # "each": one per cut
            given[f.name] = _typed(name, f, given[f.name])
    return cls(**given)


_KINDS = {  # a parameter's annotated type -> (does a value fit, what it is, an example)
    "None": (lambda v: v is None, "", ""),
    "bool": (lambda v: isinstance(v, bool), "true or false", "true"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number", "2"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number", "0.1"),
    "str": (lambda v: isinstance(v, str), "a word", "all"),
    "tuple[float, ...]": (lambda v: isinstance(v, (list, tuple)) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v), "a list of numbers", "[0.1,1,10]"),
    "tuple[str, ...]": (lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
                        "a list of names", '["query","value"]'),
}


def _typed(name: str, f: dataclasses.Field, value):
    """A strategy parameter checked against its annotation (a switch given as text, "tune=maybe", would read as true;
    a number given as text would fail mid-study): the value, lists made tuples, or one line naming what it must be."""
    kinds = [k.strip() for k in (f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))).split("|")]
    if not all(k in _KINDS for k in kinds):  # an annotation this check does not read (a plugin's): left to the strategy
        return tuple(value) if isinstance(value, list) else value
    if any(_KINDS[k][0](value) for k in kinds):
        return tuple(value) if isinstance(value, list) else value
    what = " or ".join(_KINDS[k][1] for k in kinds if _KINDS[k][1])
    example = next((_KINDS[k][2] for k in kinds if _KINDS[k][2]), "...")
    raise UserError(f"strategy '{name}': {f.name}={value!r} is not {what}", f"write it like {f.name}={example}")


@dataclass
class Fitted:
    """One trained candidate: its curve, size, and how to score it on a split."""

    result: FitResult
    trainable_params: int
    # (split, its cache key[, correct_rows]) -> (loss, accuracy), on a raw (preprocessed) split: the test split, or the
    # held-out half of validation; the key keeps their frozen features apart in the cache; ``correct_rows``, a list,
    # receives whether each example was classified correctly.
    evaluate: Callable[..., tuple[float, float]]
    model: object = None  # the trained Backbone, or the fitted sklearn pipeline
    cached: bool = False
    frozen_blocks: int = 0
    dynamics: list = field(default_factory=list)  # GradientProbe rows of the first evaluation periods
    run: FitRun | None = None  # a gradient-trained candidate: advanced rung by rung by the trial runner
    deploy_params: int | None = None  # parameters of the network one deploys (a truncated one is smaller)
    predictor: Callable | None = None  # preprocessed inputs -> class scores, the deployed network (timed per example)

    @property
    def steps_run(self) -> int:
        return self.run.steps_run if self.run is not None else 0

    def advance(self, until_step: int) -> None:
        if self.run is not None:
            self.run.advance(until_step)

    def finish(self, early: bool = False) -> None:
        """Train to the end of the budget (or stop now, ``early``) and load the best evaluation's weights."""
        if self.run is not None:
            self.run.finish(early)

    def release(self) -> None:
        """A candidate that lost, once trained: drop its network and all that holds it (its scorer's closure, its
        predictor, its run's optimizer), keeping its curve and step count for the record.  A grid extension then
        trains beside the best candidate alone, not beside every model the grid made (issue 36)."""
        self.model = self.predictor = None
        self.evaluate = _released
        if self.run is not None:
            self.run.release()


def _released(*_args, **_kwargs):
    raise RuntimeError("this candidate lost and was released: only the chosen one is scored")


@dataclass
class TrialContext:
    """Everything one trial may use. The test split is not in here: the runner opens it once."""

    pretrained: Backbone
    model_key: str
    data: TargetData
    train_idx: np.ndarray
    seed: int
    budget: Budget
    cache: FeatureCache | None = None
    device: str = "cpu"
    hooks: tuple = ()
    lazy: bool = False  # train_backbone returns candidates not yet trained (the runner advances them)
    memo: dict = field(default_factory=dict)  # what a strategy computes once per trial and its candidates share
    rng_seed: int | None = None  # the candidate's own random draws while it trains (rng.member_seed; None: the seed's)

    def fresh(self) -> Backbone:
        return self.pretrained.clone().to(self.device)

    def with_body(self, body: Backbone, key: str) -> TrialContext:
        """This trial on another fixed body (e.g. BatchNorm adapted to the target): its activations are cached
        under ``key`` in the study's cache, or once for this trial (``memo``) without one."""
        cache = self.cache or self.memo.setdefault("cache", FeatureCache(self.budget.eval_batch_size, self.device))
        return dataclasses.replace(self, pretrained=body, model_key=key, cache=cache)

    def uses_cache(self, k: int) -> bool:
        """Whether cut ``k`` comes from the study's cache: there is one, and the cut's activations of the
        largest split fit its budget (else the frozen prefix runs each step: the same numbers, bounded memory)."""
        if self.cache is None or k <= 0:
            return False
        pool = self.data._held
        rows = max(len(self.data.train), len(self.data.val), len(self.data.test), len(pool) if pool is not None else 0)
        return self.cache.holds(self.pretrained, self.model_key, self.data.train, k, rows)

    @property
    def augment(self):
        """The study's augmentation (a data.augment.Augmentation) or None: the same for every strategy."""
        return self.data.augment

    def at_cut(self, k: int, split_key: str, split: Split) -> Split:
        if not self.uses_cache(k):
            return split
        return self._states(self.cache, k, split_key, split)

    def _states(self, cache: FeatureCache, k: int, split_key: str, split: Split) -> Split:
        """Cut ``k``'s activations of ``split``; rows dealt from a pool (per-seed splits) come from the pool's
        activations, computed once for every seed."""
        if isinstance(split, Split) and split.origin is not None and self.data._held is not None:
            key, rows = split.origin
            return cache.states(self.pretrained, self.model_key, key, self.data._held, k).subset(rows)
        return cache.states(self.pretrained, self.model_key, split_key, split, k)

    def train_split(self, k: int) -> Split:
        if self.uses_cache(k):
            return self.at_cut(k, "train", self.data.train).subset(self.train_idx)
        return self.data.train.subset(self.train_idx)

    def val_split(self, k: int) -> Split:
        return self.at_cut(k, self.data.key("val"), self.data.val)

    def _cache_for(self, k: int) -> FeatureCache:
        """The study's cache where it may serve cut ``k``; else a throwaway one (computed once for this trial)."""
        return self.cache if self.uses_cache(k) else FeatureCache(self.budget.eval_batch_size, self.device)

    def _view_states(self, k: int, cache: FeatureCache) -> list:
        return view_states(cache, self.pretrained, self.model_key, self.data, k)

    def train_views(self, k: int):
        """The training inputs' augmented views at cut ``k`` (None without augmentation).

        Cut 0: computed on the fly.  A frozen prefix: its activations of each view, cached (or computed
        once for this trial without a cache), so a frozen strategy sees the same views as scratch.
        """
        from transferlab.data.augment import CachedViews, OnTheFlyViews

        if self.augment is None:
            return None
        idx = torch.as_tensor(self.train_idx, dtype=torch.long)
        if k == 0:
            return OnTheFlyViews(self.augment, self.data.train.subset(idx).inputs, idx, len(self.data.train))
        return CachedViews(self._view_states(k, self._cache_for(k)), idx)

    def features(self, k: int, split_key: str, split: Split) -> Split:
        """Activations of the pretrained body at cut ``k``: from the cache, or computed now."""
        return self._states(self._cache_for(k), k, split_key, split)

    def train_features(self, k: int) -> Split:
        """The training subset's features at cut ``k`` for a closed-form fit (a probe): with augmentation,
        every view of every example, stacked (the augmented training set)."""
        if self.augment is None:
            return self.features(k, "train", self.data.train).subset(self.train_idx)
        idx = torch.as_tensor(self.train_idx, dtype=torch.long)
        states = [take(s, idx) for s in self._view_states(k, self._cache_for(k))]
        y = self.data.train.y[idx]
        return Split(torch.cat(states), y.repeat(len(states)))


def planned_cuts(specs, backbone: Backbone) -> set[int]:
    """The cuts the trials of ``specs`` (``TrialSpec``s) read frozen (``Strategy.reads_cut``)."""
    cuts = {from_spec(s.strategy, s.params).reads_cut(backbone) for s in specs}
    return {k for k in cuts if k is not None}


def view_states(cache: FeatureCache, pretrained: Backbone, model_key: str, data: TargetData, k: int) -> list:
    """The training pool's activations at cut ``k`` for each augmented view (one prefix pass per view)."""
    aug, pool = data.augment, data.train
    key = aug.describe()["key"]
    return [cache.states(pretrained, model_key, f"train-{key}-{v}", (lambda v=v: aug.view(pool, v)), k).inputs
            for v in range(aug.views)]


@dataclass(frozen=True)
class PlanContext:
    """What a strategy may read when it expands itself: the study's depth setting and the preflight profile."""

    depths: str | list[int] = "all"  # "all", "auto" (the profile's best cuts) or a list of k
    profile: dict | None = None


EACH = "each"  # a cut parameter set to this runs one configuration per cut (see cuts_to_run)


def cuts_to_run(backbone: Backbone, plan: PlanContext | None) -> list[int]:
    """The cuts 1..n a per-cut strategy (a probe, a head or a truncated network at each cut) runs: every cut
    whose activations a pool can read; with the study's ``depths`` "auto", the profile's best cuts and the last
    one (the whole network, the reference a smaller one is compared with); with a list, its cuts from 1 on."""
    from transferlab.strategies.freeze import auto_depths

    cuts = [k for k in range(1, backbone.n_blocks + 1) if backbone.pooled_dims[k - 1]]
    chosen = (plan or PlanContext()).depths
    if chosen == "all":
        return cuts
    keep = [*auto_depths(plan.profile), backbone.n_blocks] if chosen == "auto" else list(chosen)
    for k in keep:
        backbone._check_k(k)
    return [k for k in cuts if k in keep]


def check_cut(backbone: Backbone, cut, what: str) -> None:
    """A cut parameter: None (the last cut), EACH, or a whole number 1..n_blocks."""
    if cut is None or cut == EACH:
        return
    if isinstance(cut, bool) or not isinstance(cut, int):
        raise UserError(f"{what} {cut!r} is not a cut", f"give a whole number 1..{backbone.n_blocks}, or '{EACH}' for every cut")
    if cut == 0:
        raise UserError(f"{what} 0 reads the raw input, not the pretrained network",
                        f"choose a cut between 1 and {backbone.n_blocks}")
    if not 0 < cut <= backbone.n_blocks:
        raise UserError(f"{what} {cut} is outside this model's blocks 1..{backbone.n_blocks} "
                        f"({', '.join(backbone.block_names)})", f"choose a cut between 1 and {backbone.n_blocks}")


@dataclass(frozen=True)
class Strategy:
    """Base class. Subclasses are frozen dataclasses whose fields are hyperparameters."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    reuses_weights: ClassVar[bool] = True  # starts from the pretrained body, so "what moved" is measured
    depth_param: ClassVar[str | None] = None  # a parameter that is a depth: its runs form a depth curve
    removes_later: ClassVar[bool] = False  # its depth is a cut after which the network's blocks are removed
    adapts_statistics: ClassVar[bool] = False  # changes frozen blocks' BatchNorm statistics on purpose (AdaBN)

    def params(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """Name plus the parameters that differ from their defaults, e.g. ``linear_probe(kind=svm)``."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return label(self.name, {k: v for k, v in self.params().items() if v != defaults[k]})

    def expand(self, backbone: Backbone, plan: PlanContext | None = None) -> list[Strategy]:
        """Concrete configurations to run (``freeze_k`` with no k gives one per cut, or the ``plan``'s depths).
        A per-cut strategy (``removes_later``) whose cut is ``EACH`` runs one configuration per cut to run."""
        if self.removes_later and getattr(self, self.depth_param) == EACH:
            return [dataclasses.replace(self, **{self.depth_param: k}) for k in cuts_to_run(backbone, plan)]
        return [self]

    def check(self, backbone: Backbone) -> None:
        """Raise ``UserError`` if these hyperparameters do not fit this backbone."""

    def applies(self, backbone: Backbone) -> str | None:
        """Why this strategy cannot help on ``backbone`` (no BatchNorm to adapt, no attention to adapt), or None.
        A study leaves such a strategy out and records the reason; it is not an error."""
        return None

    def trains_from(self, backbone: Backbone) -> int | None:
        """The first block whose weights train (``n_blocks``: only the head; None: a closed-form fit on
        frozen features). The cost estimate times training once per distinct value."""
        return 0

    def reads_cut(self, backbone: Backbone) -> int | None:
        """The cut whose frozen activations this configuration reads (from the study's cache where it fits), or
        None.  The study computes the training pool's augmented views only at such cuts (``planned_cuts``)."""
        k = self.trains_from(backbone)
        return k if k is not None and 0 < k <= backbone.n_blocks else None

    def candidates(self, budget: Budget) -> list[dict]:
        return [{"lr": lr} for lr in budget.lrs]

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        raise NotImplementedError


def standardize_head(ctx: TrialContext, bb: Backbone, k: int) -> None:
    """Put a ``Standardize`` of the frozen body's features (statistics of the trial's training rows, every
    augmented view) in front of ``bb``'s new head, as the linear probe's StandardScaler does. The features are
    cut ``k``'s through ``bb``'s parameter-free blocks after it (a truncated network's pool). Computed once
    per trial and shared by its candidates; left out where the features are not one tensor."""
    from torch import nn

    from transferlab.backbones.base import Standardize

    if ("standardize", k) not in ctx.memo:
        feats = ctx.train_features(k).inputs
        with torch.no_grad():
            for block in list(bb.blocks.values())[k:]:
                feats = block(feats)
        ctx.memo[("standardize", k)] = Standardize.fitted(feats) if isinstance(feats, torch.Tensor) else None
    if ctx.memo[("standardize", k)] is not None:
        bb.head = nn.Sequential(ctx.memo[("standardize", k)], *bb.head)


def train_backbone(ctx: TrialContext, bb: Backbone, k: int, groups: list[dict],
                   hooks: tuple[Hook, ...] = (), log0: EvalLog | None = None) -> Fitted:
    """Train ``bb`` with its first ``k`` blocks frozen, on cached activations when exact."""
    from transferlab.diagnose import GradientProbe

    later = [p for b in list(bb.blocks.values())[k:] for p in b.parameters()]
    if bb.fixed_prefix == k and not later:
        standardize_head(ctx, bb, k)  # every new head on frozen features: head, bn_adapt, freeze_k(k=n), truncate
    seed = member_seed(ctx.seed) if ctx.rng_seed is None else ctx.rng_seed
    key_dropout(bb, seed)  # sites numbered over the whole network: the same masks whether the prefix is cached or not
    cached = ctx.uses_cache(k) and k <= bb.fixed_prefix
    model = bb.suffix(k) if cached else bb
    cut = k if cached else 0
    generator = torch.Generator().manual_seed(ctx.seed)
    probe = GradientProbe(bb)
    run = FitRun(model, groups, ctx.train_split(cut), ctx.val_split(cut), ctx.budget, generator,
                 hooks=(*hooks, probe, *ctx.hooks), views=ctx.train_views(cut), device=ctx.device, log0=log0,
                 rng_seed=seed)
    if not ctx.lazy:
        run.finish()

    def score(split: Split, key: str = "test", correct_rows: list | None = None) -> tuple[float, float]:
        return evaluate(model, ctx.at_cut(cut, key, split), ctx.budget.eval_batch_size, ctx.device, correct_rows)

    return Fitted(run.result, count_trainable(bb), score, bb, cached, len(bb.frozen), probe.rows, run,
                  deploy_params=sum(p.numel() for p in bb.parameters()), predictor=bb)
