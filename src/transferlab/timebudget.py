"""A study that fits the time the user has: ``time_budget`` plans the study before anything trains.

The cost estimate (``estimate.py``) times the real fit loop once per trainable suffix.  On those timings the
planner multiplies out smaller and smaller plans until the plan with every seed it may run (every verdict open to
the last seed), each run to its step budget, fits the budget.  A run still improving at its budget may go on
(``extend``), so a study can take longer than its plan; the report sets the real wall time beside it.  Each step runs only while the plan is still too long:

1. fewer seeds at most: ``max_seeds`` down to ``first_seeds`` (the first round, which every verdict needs, stays);
2. successive halving of the LR candidates (``halving``), for every strategy alike;
3. fewer sizes per class, the dearest first (the smallest goes last: it is where transfer matters most);
4. a lower step floor (``min_steps`` halved, down to ``MIN_FLOOR``): every run still stops only once converged,
   and one still improving at its budget goes on, up to ``extend`` times it;
5. fewer strategies: scratch always stays (every verdict is against it); of the others, the one with the least
   promise per second goes first.  Promise is the profile's linear-probe accuracy at the cut the strategy reads
   (the best cut's for one that trains the whole network); without a profile, cost alone decides.

Every cut applies to every strategy alike, scratch included, and every arm kept still trains until it has
converged (or reached ``extend`` times its budget, as in any study), so a fitted study is smaller, not less fair.  When not even scratch and one other strategy at one size fit, the study is refused, with the
smallest plan's estimate.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace

from transferlab.errors import UserError

# An automatic seed cap (``max_seeds = "auto"``) is the largest of these whose worst case fits ``seed_budget``; the
# looks are then 3, 6, 10 / 3, 6, 12 / 3, 6, 12, 24.  Why more seeds where they are cheap: a realistic 5-10 pp gap
# with a paired SD of 3-6 pp (the demo at 5 per class) needs 12-28 seeds to decide, and a study of small models
# spends seconds per seed (benchmarks/README.md, "the seed cap").
AUTO_CAPS = (10, 12, 24)
MIN_FLOOR = 100  # the shortest step floor a time budget may set (BiT's is 500; a run still improving goes on)
LEAST, DEAREST = "least promise per second", "the dearest strategy"
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_duration(text, what: str = "time budget") -> float:
    """'30m', '1h30m', '2h', '90s', '1.5h' -> seconds; ``what`` names the setting in a refusal."""
    s = str(text).strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|min|m|sec|s)", s)
    if not s or not parts or "".join(a + b for a, b in parts) != s:
        raise UserError(f"{what} {text!r} is not a duration", "write it as 30m, 2h, 1h30m or 90s")
    seconds = sum(float(a) * _UNITS[b] for a, b in parts)
    if seconds <= 0:
        raise UserError(f"{what} {text!r} is not positive", "write it as 30m, 2h, 1h30m or 90s")
    return seconds


@dataclass
class TimePlan:
    """What the planner kept and dropped to fit ``budget_s`` (``study.json``'s ``time_plan``)."""

    budget: str
    budget_s: float
    before_s: float  # the plan as given, every seed it may run, each run to its step budget
    estimate_s: float  # the same for the plan kept
    first_s: float  # its first round of seeds
    kept: dict = field(default_factory=dict)  # sizes, strategies (labels), max_seeds
    dropped: list = field(default_factory=list)  # {"what", "saves_s", "why"}, in the order dropped

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        from transferlab.estimate import clock

        if not self.dropped:
            return f"The whole plan fits the time budget of {self.budget} (estimated at about {clock(self.before_s)})"
        cut = "; ".join(f"{d['what']} ({d['why']}, saves about {clock(d['saves_s'])})" for d in self.dropped)
        labels = self.kept["strategies"]
        dropped = sum(1 for d in self.dropped if d["what"] in self.labels_dropped())
        kept = (f"all {len(labels)} configurations" if not dropped else
                f"{len(labels)} of {len(labels) + dropped} configurations ({', '.join(labels)})")
        return (f"Fitted to the time budget of {self.budget} (the plan as given: about {clock(self.before_s)} with every "
                f"seed it may run). Kept: sizes {', '.join(map(str, self.kept['sizes']))}; {kept}; "
                f"{self.kept.get('seeds', self.kept['max_seeds'])} seeds; a step floor of {self.kept['min_steps']}"
                f"{'; successive halving' if self.kept['halving'] else ''}; about {clock(self.estimate_s)} with every "
                f"seed (a run still improving at its budget may take longer). Dropped: {cut}")

    def labels_dropped(self) -> list[str]:
        return [d["what"] for d in self.dropped if d["why"] in (LEAST, DEAREST)]


def _promise(strategy, backbone, profile: dict | None) -> float:
    rows = {r["k"]: r.get("probe_acc") for r in (profile or {}).get("cuts", []) if r.get("probe_acc") is not None}
    if not rows:
        return 1.0
    cut = strategy.params().get(strategy.depth_param) if strategy.depth_param else None
    if not isinstance(cut, int) or isinstance(cut, bool):
        start = strategy.trains_from(backbone)
        cut = backbone.n_blocks if start is None else start
    return rows.get(cut, max(rows.values())) if cut > 0 else max(rows.values())


def fit_to_time(prep, configs: list, budget: str, stored: dict | None = None):
    """The study's config and configurations cut down until the estimate with every seed it may run fits
    ``budget``; and the TimePlan.
    ``stored``: the plan a study folder was started with (its TimePlan as a dict), resumed as it was."""
    from transferlab.estimate import parallel, plan_costs

    seconds = parse_duration(budget)
    config = replace(prep.config, max_seeds=prep.config.seed_cap())  # an automatic cap starts from its floor here
    if stored and stored.get("budget") == str(budget):
        kept = stored["kept"]
        config = replace(config, sizes=[n for n in config.sizes if n in kept["sizes"]], max_seeds=kept["max_seeds"],
                         halving=kept["halving"], budget=replace(config.budget, min_steps=kept["min_steps"]))
        return config, [s for s in configs if s.label in kept["strategies"]], TimePlan(**stored)
    one_process = plan_costs(prep, configs)  # (config, configs) -> (every seed s, first round s, s per label)
    workers = parallel(config, prep.backbone, prep.device)

    def cost(new_config, new_configs):
        """In wall time: the trials share the worker processes (the cache's pass, small beside them, too)."""
        worst, first_round, labels = one_process(new_config, new_configs)
        return worst / workers, first_round / workers, labels

    before, first, per_label = cost(config, configs)
    dropped: list[dict] = []

    def drop(what: str, why: str, new_config, new_configs) -> None:
        """Apply a cut, unless it saves under 1% (halving a one-value grid, a floor under the size's own steps)."""
        nonlocal config, configs, before_now, first, per_label
        after, first_new, per_label_new = cost(new_config, new_configs)
        if after > 0.99 * before_now:
            return
        dropped.append({"what": what, "saves_s": before_now - after, "why": why})
        config, configs, before_now, first, per_label = new_config, new_configs, after, first_new, per_label_new

    before_now = before
    if before_now > seconds and config.sequential and config.max_seeds > config.first_seeds:
        fewer = [m for m in range(config.max_seeds - 1, config.first_seeds - 1, -1)]
        fits = next((m for m in fewer if cost(replace(config, max_seeds=m), configs)[0] <= seconds), config.first_seeds)
        drop(f"max_seeds {config.max_seeds} -> {fits}", "fewer follow-up seeds where a verdict is open",
             replace(config, max_seeds=fits), configs)
    if before_now > seconds and not config.halving:
        drop("every LR candidate to the end", "successive halving of the LR candidates instead, for every strategy",
             replace(config, halving=True), configs)
    while before_now > seconds and len(config.sizes) > 1:
        sizes = config.sizes
        numeric = [n for n in sizes if isinstance(n, int)]
        smallest = min(numeric) if numeric else sizes[0]
        by_size = {n: cost(replace(config, sizes=[n]), configs)[0] for n in sizes if n != smallest}
        dearest = max(by_size, key=by_size.get)
        drop(f"size {dearest} per class", "the dearest size",
             replace(config, sizes=[n for n in sizes if n != dearest]), configs)
    b = config.budget
    grows = (f"a shorter budget; a run still improving goes on, up to {b.extension}x" if b.schedule == "constant"
             and b.extension > 1 else "a shorter budget (this schedule ends each run at its budget)")
    floors = [f for f in (b.min_steps // 2, b.min_steps // 4, b.min_steps // 8, MIN_FLOOR) if f >= MIN_FLOOR]
    for floor in (floors if b.steps is None and b.epochs is None else []):
        if before_now <= seconds or floor >= config.budget.min_steps:
            continue
        drop(f"step floor {config.budget.min_steps} -> {floor}", grows,
             replace(config, budget=replace(config.budget, min_steps=floor)), configs)
    profile = prep.measurements.get("profile")
    while before_now > seconds:
        others = [s for s in configs if s.name != "scratch"]
        if len(others) <= 1:
            break
        least = min(others, key=lambda s: _promise(s, prep.backbone, profile) / max(per_label.get(s.label, 0.0), 1e-9))
        why = LEAST if profile else DEAREST
        drop(least.label, why, config, [s for s in configs if s is not least])
    if before_now > seconds:
        from transferlab.estimate import clock

        raise UserError(f"the time budget of {budget} is less than the smallest study this plan allows: "
                        f"{', '.join(s.label for s in configs)} at {config.sizes[0]} per class with "
                        f"{config.first_seeds} seeds needs up to about {clock(before_now)}",
                        f"give at least --time-budget {max(1, round(before_now / 60 * 1.1))}m, or a cheaper strategy")
    kept = {"sizes": list(config.sizes), "strategies": [s.label for s in configs], "max_seeds": config.max_seeds,
            "halving": config.halving, "min_steps": config.budget.min_steps,
            "seeds": f"up to {config.max_seeds}" if config.sequential else str(len(config.seeds))}
    return config, configs, TimePlan(str(budget), seconds, before, before_now, first, kept, dropped)


def auto_seed_cap(prep, configs: list, stored: dict | None):
    """``(config, note)``: a sequential study's ``max_seeds = "auto"`` resolved from the cost estimate: the largest of
    ``AUTO_CAPS`` whose worst case (every configuration at every seed, in wall time) fits ``seed_budget``, at least
    the first.  A rerun resumes the cap its folder was started with (``stored``: study.json's ``seed_cap``).  With a
    time budget the planner trims seeds from the largest cap (``fit_to_time``); without an estimate the cap is the
    first.  ``note`` is None where nothing was resolved."""
    config = prep.config
    if config.max_seeds != "auto" or not config.sequential:
        return config, None
    if stored and stored.get("auto"):
        return replace(config, max_seeds=stored["max_seeds"]), stored
    if config.time_budget is not None or not config.estimate:
        cap = AUTO_CAPS[-1] if config.time_budget is not None else next(
            (m for m in AUTO_CAPS if m >= config.first_seeds), AUTO_CAPS[-1])
        why = (f"the time budget of {config.time_budget} trims seeds from {cap}" if config.time_budget is not None
               else "no cost estimate: the first cap")
        return replace(config, max_seeds=cap), {"auto": True, "max_seeds": cap, "why": why}
    return choose_cap(config, worst_by_cap(prep, configs))


def worst_by_cap(prep, configs: list) -> dict[int, float]:
    """Wall seconds of every configuration at every seed up to each of ``AUTO_CAPS`` (one cost measurement)."""
    from transferlab.estimate import parallel, plan_costs

    cost, workers = plan_costs(prep, configs), parallel(prep.config, prep.backbone, prep.device)
    return {m: cost(replace(prep.config, max_seeds=m), configs)[0] / workers for m in AUTO_CAPS}


def choose_cap(config, worst: dict[int, float], what: str = "") -> tuple:
    """The largest cap whose ``worst`` case fits ``seed_budget`` (at least the first, and at least ``first_seeds``):
    ``(config with that cap, note)``.  ``what``: whose worst case it is, for the note (", summed over the 2 sources,")."""
    from transferlab.estimate import clock

    budget = parse_duration(config.seed_budget, "seed budget")
    caps = [m for m in AUTO_CAPS if m >= config.first_seeds] or [config.first_seeds]
    worst = {m: worst[m] for m in caps if m in worst}
    fits = [m for m in caps if worst.get(m, math.inf) <= budget]
    cap = max(fits or [caps[0]])
    took = f"every seed to {cap}{what}"
    why = (f"{took} would take at most about {clock(worst[cap])}, within the seed budget of {config.seed_budget}"
           if fits else f"{took} would take up to about {clock(worst.get(cap, math.inf))}, past the seed budget of "
                        f"{config.seed_budget}: the first cap")
    return replace(config, max_seeds=cap), {"auto": True, "max_seeds": cap, "why": why,
                                             "worst_s": {str(m): round(v, 1) for m, v in worst.items()}}
