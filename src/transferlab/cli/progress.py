"""Terminal output for the CLI: a progress bar while trials run, a summary table at the end."""
from __future__ import annotations

import math
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from transferlab.execution import StudyCallback
from transferlab.analysis.stats import seeds_hint
from transferlab.results import StudyResult

PRIOR_SHARE = 0.2  # the estimate's pace weighs as much as this share of its first round, measured

console = Console(stderr=True)


class RichProgress(StudyCallback):
    """A progress bar on a terminal; piped to a file or a CI log, one plain line per finished trial instead."""

    def __init__(self, plain: bool | None = None):
        self.progress = None
        self.plain = (not console.is_terminal) if plain is None else plain
        self.total = self.done = 0
        self.started = 0.0
        self.trial_s: dict = {}  # the estimate's seconds per trial: the time left weighs trials by their cost
        self.first_wall = 0.0  # before the first trial ends, the time left is the estimate's wall time
        self.est_todo = self.est_done = 0.0
        self.est_first = 0.0  # the estimate's seconds for its first round (one process): the prior pace's weight

    def on_wait(self, holder: str) -> None:
        console.print(f"[dim]the study folder is in use by {holder}; waiting for it to finish[/dim]", highlight=False,
                      soft_wrap=True)

    def on_begin(self, study: dict) -> None:
        for s in study.get("sizes_dropped") or []:
            console.print(f"[dim]size {s['size']} per class left out: {s['reason']}[/dim]", highlight=False, soft_wrap=True)
        if study.get("time_plan"):
            from transferlab.timebudget import TimePlan

            console.print(f"[dim]{TimePlan(**study['time_plan']).text()}.[/dim]", highlight=False, soft_wrap=True)
        cap = study.get("seed_cap") or {}
        if "worst_s" in cap:  # a cap from the estimate: the design a user reads the verdicts under
            console.print(f"[dim]Seeds: up to {cap['max_seeds']} where a verdict is open ({cap['why']}).[/dim]",
                          highlight=False, soft_wrap=True)

    def on_estimate(self, estimate) -> None:
        console.print(f"[dim]{estimate.text()}[/dim]", highlight=False, soft_wrap=True)
        self.trial_s = dict(estimate.trial_s)
        self.est_todo, self.first_wall = estimate.first_s, estimate.wall(estimate.first_s)
        self.est_first = estimate.first_s

    def on_start(self, total: int, todo: int, study: dict) -> None:
        """Called once per round of seeds: the first starts the bar, later ones extend it."""
        title = study.get("title") or study["model"]["spec"].get("source", "study")
        if self.total and (self.progress is not None or self.plain):
            console.print(f"[dim]{title}: {todo} more trial{'s' if todo != 1 else ''}, where a verdict is still open[/dim]")
            self.total += todo
            if self.trial_s:
                self.est_todo += todo * sum(self.trial_s.values()) / len(self.trial_s)
            if self.progress is not None:
                self.progress.update(self.task, total=self.total)
            return
        if todo < total:
            console.print(f"[dim]{title}: resuming, {total - todo} of {total} trials already done[/dim]")
        self.total, self.done, self.started = todo, 0, time.perf_counter()
        if self.plain:
            console.print(f"{title}: {todo} trials to run")
            return
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[left]}"), TextColumn("{task.fields[last]}"),
                                 console=console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task(title, total=todo, last="", left=self._left())

    def on_trial_end(self, record: dict) -> None:
        if record["strategy"] == "zero_shot":
            return
        acc = record.get("test_acc")
        shown = f"{record['label']} n={record['n_train']} s={record['seed']}: " + (
            f"{100 * acc:.1f}%" if acc is not None else record["status"])
        self.done += 1
        self.est_done += self.trial_s.get(record["trial_id"], 0.0)
        if self.progress is not None:
            self.progress.update(self.task, advance=1, last=shown, left=self._left())
        elif self.plain:
            console.print(f"[{self.done}/{self.total}] {shown}  ({self._times()})", highlight=False, soft_wrap=True)

    def _seconds_left(self) -> float | None:
        """At the pace so far, weighing the trials left by their estimated cost (trials differ a lot in cost:
        a frozen head is seconds, a fine-tune minutes); at the mean pace per trial without an estimate."""
        elapsed = time.perf_counter() - self.started
        if self.trial_s and self.est_first > 0:
            # The pace (wall seconds per estimated second) starts at the estimate's own and moves to the measured
            # one as trials end. Measured alone it is absurd at first: the first trial to end is often a probe
            # estimated at milliseconds, after seconds of start-up (the demo once read "about 143:23:28 left").
            prior, weight = self.first_wall / self.est_first, PRIOR_SHARE * self.est_first
            pace = (elapsed + prior * weight) / (self.est_done + weight)
            return pace * max(0.0, self.est_todo - self.est_done)
        return elapsed / self.done * max(0, self.total - self.done) if self.done else None

    def _left(self) -> str:
        left = self._seconds_left()
        return "" if left is None or self.done >= self.total else f"about {_clock(left)} left"

    def _times(self) -> str:
        elapsed = _clock(time.perf_counter() - self.started)
        left = self._left()
        return f"elapsed {elapsed}, {left}" if left else f"elapsed {elapsed}"

    def on_end(self, result: StudyResult) -> None:
        if self.progress:
            self.progress.stop()
        self.progress, self.total, self.trial_s, self.est_todo, self.est_done = None, 0, {}, 0.0, 0.0


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...]) -> Table:
    """Cells fold rather than end in '...', so a label is never cut (a log file is 80 columns wide)."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right", overflow="fold")
    return table


def _ci(ci) -> str:
    if not math.isfinite(ci.lo):
        return f"{100 * ci.mean:.1f}"
    return f"{100 * ci.mean:.1f} [{100 * ci.lo:.1f}, {100 * ci.hi:.1f}]"  # a clipped interval is not symmetric


def print_summary(result: StudyResult) -> None:
    a = result.analysis
    size = a.recommendation.n_train
    table = _table(f"{result.study.get('title') or result.study['data']['name']}: {size} per class",
                   ("strategy", "test acc % [95% CI]", "gain vs scratch, pp [simultaneous CI]", "verdict", "trainable"), ("strategy",))
    for r in a.accuracy:
        if r.n_train != size:
            continue
        g = a.gain(r.label, size)
        table.add_row(r.label, _ci(r.test_acc), _ci(g.gain) if g else "", g.verdict if g else "", f"{r.trainable_params:,}")
    out = Console()
    for line in a.answer:  # the answer first, then the evidence
        out.print(line, highlight=False)
    out.print(table)
    out.print(f"[bold]Recommendation:[/bold] {a.recommendation.text}")
    for u in a.recommendation.undecided:  # the undecided table, a line each
        out.print(f"  undecided: {u.label} at {u.n_train}: {100 * u.mean:+.1f} pp after {u.n} seeds; {u.what}",
                  highlight=False)
    if a.recommendation.details:
        out.print(a.recommendation.details, style="dim", highlight=False)
    conv = a.converged_share()
    if conv is not None:
        style = "" if conv >= 0.95 else "[yellow]"
        out.print(f"{style}Converged: {100 * conv:.0f}% of the trials (the report's 'Did every arm converge?').{'[/yellow]' if style else ''}",
                  highlight=False)
    if a.failed:
        out.print(f"[yellow]{len(a.failed)} trials did not finish; see the report.[/yellow]")
    if result.report_path:
        out.print(f"report: {result.report_path}")


def print_sources(result) -> None:
    """A multi-source study: the ranking at the largest size, then the recommendation."""
    c = result.comparison
    out = Console()
    if c.rankings:
        r = c.rankings[-1]
        table = _table(f"which pretrained model: {r.n_train} per class", ("source", "best configuration", "val acc %",
                       "test acc %", f"vs {r.leader}, pp", "verdict"), ("source", "best configuration"))
        for x in r.contestants:
            t = x.vs_leader_test
            table.add_row(x.name, x.label, f"{100 * x.val_acc.mean:.1f}", _ci(x.test_acc), _ci(t) if t else "leader",
                          t.verdict + seeds_hint(t, t.verdict) if t else "")
        out.print(table)
    out.print(f"[bold]Recommendation:[/bold] {c.recommendation['text']}")
    if result.report_path:
        out.print(f"report: {result.report_path}")
