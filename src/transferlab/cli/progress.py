"""Terminal output for the CLI: a progress bar while trials run, a summary table at the end."""
from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from transferlab.execution import StudyCallback
from transferlab.results import StudyResult

console = Console(stderr=True)


class RichProgress(StudyCallback):
    def __init__(self):
        self.progress = None

    def on_start(self, total: int, todo: int, study: dict) -> None:
        """Called once per round of seeds: the first starts the bar, later ones extend it."""
        title = study.get("title") or study["model"]["spec"].get("source", "study")
        if self.progress is not None:
            console.print(f"[dim]{title}: {todo} more trials, where a verdict is still open[/dim]")
            self.progress.update(self.task, total=self.progress.tasks[0].total + todo)
            return
        if todo < total:
            console.print(f"[dim]{title}: resuming, {total - todo} of {total} trials already done[/dim]")
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
                                 console=console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task(title, total=todo, last="")

    def on_trial_end(self, record: dict) -> None:
        acc = record.get("test_acc")
        shown = f"{record['label']} n={record['n_train']} s={record['seed']}: " + (
            f"{100 * acc:.1f}%" if acc is not None else record["status"])
        if record["strategy"] != "zero_shot":
            self.progress.update(self.task, advance=1, last=shown)

    def on_end(self, result: StudyResult) -> None:
        if self.progress:
            self.progress.stop()
            self.progress = None


def _ci(ci) -> str:
    if not math.isfinite(ci.lo):
        return f"{100 * ci.mean:.1f}"
    return f"{100 * ci.mean:.1f} ± {100 * (ci.hi - ci.mean):.1f}"


def print_summary(result: StudyResult) -> None:
    a = result.analysis
    size = a.recommendation.n_train
    table = Table(title=f"{result.study.get('title') or result.study['data']['name']}: {size} per class")
    for col in ("strategy", "test acc %", "gain vs scratch, pp", "verdict", "trainable"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for r in a.accuracy:
        if r.n_train != size:
            continue
        g = a.gain(r.label, size)
        table.add_row(r.label, _ci(r.test_acc), _ci(g.gain) if g else "", g.verdict if g else "", f"{r.trainable_params:,}")
    out = Console()
    out.print(table)
    out.print(f"[bold]Recommendation:[/bold] {a.recommendation.text}")
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
        table = Table(title=f"which pretrained model: {r.n_train} per class")
        for col in ("source", "best configuration", "val acc %", "test acc %", f"vs {r.leader}, pp", "verdict"):
            table.add_column(col, justify="left" if col in ("source", "best configuration") else "right")
        for x in r.contestants:
            t = x.vs_leader_test
            table.add_row(x.name, x.label, f"{100 * x.val_acc.mean:.1f}", _ci(x.test_acc), _ci(t) if t else "leader",
                          t.verdict if t else "")
        out.print(table)
    out.print(f"[bold]Recommendation:[/bold] {c.recommendation['text']}")
    if result.report_path:
        out.print(f"report: {result.report_path}")
