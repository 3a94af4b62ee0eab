"""The ``transferlab`` command: a thin typer layer, one library call per command.

Bad input (a ``UserError``) prints one line and exits with status 2; set
TRANSFERLAB_DEBUG=1 to see the traceback instead.
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Optional

import click
import typer

from transferlab.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Should I transfer, and how? Run every reuse strategy against scratch and get the evidence.")


def _whole(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _sizes(text: Optional[str]):
    if text is None:
        return None
    out = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            out.append("all")
        elif _whole(part) and int(part) > 0:
            out.append(int(part))
        else:
            raise UserError(f"--sizes item '{part}' is not a positive number or 'all'", "write it like --sizes 5,20,50,all")
    return out


def _config(base, seeds, sizes, epochs, workers, no_cache, strategies, executor=None, ray_address=None, depths=None,
            schedule=None, design: dict | None = None, device: str | None = None, steps: int | None = None,
            budget_opts: dict | None = None):
    from dataclasses import replace

    from transferlab.config import StudyConfig

    cfg = base or StudyConfig()
    if seeds is not None:
        cfg.seeds = list(range(seeds))
    if sizes is not None:
        cfg.sizes = _sizes(sizes)
    if epochs is not None and steps is not None:
        raise UserError("--epochs and --steps both set the budget", "give one: --steps N optimizer steps, or --epochs N passes")
    if epochs is not None:  # a budget given in passes: the step count follows from the subset's size
        cfg.budget = replace(cfg.budget, epochs=epochs, steps=None)
    if steps is not None:
        cfg.budget = replace(cfg.budget, steps=steps, epochs=None)
    if budget_opts:
        from transferlab.config import budget_from_dict

        cfg.budget = budget_from_dict({**cfg.budget.to_dict(), **budget_opts})
    if schedule is not None:
        cfg.budget = replace(cfg.budget, schedule=schedule)
    if workers is not None:
        if workers != "auto" and not (_whole(workers) and int(workers) > 0):
            raise UserError(f"--workers '{workers}' is not a positive whole number or auto", "use --workers 2 or --workers auto")
        cfg.workers = workers if workers == "auto" else int(workers)
        cfg.executor = "process" if workers != "auto" and int(workers) > 1 else "inline"
    if executor is not None:
        cfg.executor = executor
    if ray_address is not None:
        cfg.executor, cfg.ray_address = "ray", ray_address
    if depths is not None:
        cfg.depths = depths if depths in ("all", "auto") else _depths(depths)
    if device is not None:
        cfg.device = device
    if no_cache:
        cfg.cache = False
    if strategies:
        from transferlab.config import parse_strategy, split_strategies

        cfg.strategies = [parse_strategy(s) for s in split_strategies(strategies)]
    for key, value in (design or {}).items():  # the verdicts' design and the study-level augmentation
        if value is not None:
            setattr(cfg, key, value)
    if (design or {}).get("max_seeds") is not None and isinstance(cfg.max_seeds, int) and 1 <= cfg.max_seeds < cfg.first_seeds:
        cfg.first_seeds = cfg.max_seeds  # --max-seeds 2: two seeds, not a complaint about first_seeds
    StudyConfig.__post_init__(cfg)
    return cfg


def _depths(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    if not all(_whole(p) for p in parts):
        raise UserError(f"--depths '{text}' is not all, auto or a list of block counts", "write it like --depths 1,3 or --depths auto")
    return [int(p) for p in parts]


def _options(pairs: Optional[list[str]], flag: str) -> dict:
    """key=value pairs; values read as JSON when they parse (numbers, lists, true/false), else as text."""
    import json

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} '{pair}' is not key=value", f"write it like {flag} size=[32,32]")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


SEEDS = typer.Option(None, help="a fixed number of seeds for every configuration (default: sequential, 3 then more "
                                "only where a verdict is still open, up to --max-seeds)")
MAX_SEEDS = typer.Option(None, "--max-seeds", help="sequential study: the most seeds a configuration gets (default: from the cost estimate, 24 where every seed to 24 fits in 10 minutes (seed_budget in a study file), else 12 or 10)")
MARGIN = typer.Option(None, help="equivalence margin in accuracy points: a difference inside ±margin is 'equivalent' (default 1)")
AUGMENT = typer.Option(None, help="augmentation for every strategy: auto (the data's default), none, crop, resized_crop, flip, crop,flip")
WAIT = typer.Option(False, "--wait", help="if another transferlab process is running in the study folder, wait for it "
                    "to finish and then resume (default: refuse, naming that process)")
HALVING = typer.Option(None, "--halving/--no-halving", help="prune LR candidates by successive halving (faster; it can "
                       "drop a slow-starting LR that would have won) or train every candidate until it converges (default)")


SPLITS = typer.Option(None, help="validation and test examples: auto (default: for splits made here with under 2,000 "
                      "test examples each seed draws its own validation; one test split for the study), per_seed (test "
                      "redrawn per seed too), or fixed")


def _design(max_seeds, margin, augment, halving, splits=None, time_budget=None) -> dict:
    return {"max_seeds": max_seeds, "margin": None if margin is None else margin / 100, "augment": augment,
            "halving": halving, "splits": splits, "time_budget": time_budget}
TIME_BUDGET = typer.Option(None, "--time-budget", help="fit the study to this much time, e.g. 30m or 2h: before training, "
                           "fewer follow-up seeds, successive halving, fewer sizes, a lower step floor, then the least "
                           "promising strategies per second, until the estimate fits (scratch stays); it prints what it kept")
SIZES = typer.Option(None, help="target examples per class, e.g. 5,20,50,all")
EPOCHS = typer.Option(None, help="budget in passes over each training subset, converted to optimizer steps "
                      "(default: 30 passes and at least 500 steps)")
STEPS = typer.Option(None, help="budget in optimizer steps per candidate, the same at every size")
BUDGET_OPT = typer.Option(None, "--budget-opt", help="budget setting key=value (repeatable), e.g. min_steps=1000, "
                          "patience=12, grid_extensions=0, lrs=[1e-4,1e-3]")
WORKERS = typer.Option(None, help="parallel worker processes, or auto (from the model's size and the usable cores)")
NO_CACHE = typer.Option(False, "--no-cache", help="recompute frozen layers every step")
STRATS = typer.Option(None, help="comma-separated strategies, each a name or name(param=value, ...), e.g. "
                      "scratch,linear_probe(cut=each),truncate,truncate(tune=true) (default: the standard set)")
DEVICE = typer.Option(None, help="auto (a GPU when there is one), cpu, cuda, cuda:N or mps")
TRACK = typer.Option(None, help="log every trial to mlflow (MLFLOW_TRACKING_URI, else OUT/mlflow.db) or "
                     "tensorboard (OUT/tensorboard); repeatable")
SCHEDULE = typer.Option(None, help="LR schedule of every strategy: constant (default), onecycle (fastai's) or cosine")


@app.command()
def demo(out: Path = typer.Option(Path("transferlab-demo"), help="study folder"), seeds: Optional[int] = SEEDS,
         sizes: Optional[str] = SIZES, epochs: Optional[int] = EPOCHS, steps: Optional[int] = STEPS,
         budget_opt: Optional[list[str]] = BUDGET_OPT, workers: Optional[str] = WORKERS,
         no_cache: bool = NO_CACHE, strategies: Optional[str] = STRATS, schedule: Optional[str] = SCHEDULE,
         max_seeds: Optional[int] = MAX_SEEDS, margin: Optional[float] = MARGIN, augment: Optional[str] = AUGMENT,
         halving: Optional[bool] = HALVING, splits: Optional[str] = SPLITS, track: Optional[list[str]] = TRACK,
         wait: bool = WAIT):
    """Run the embedded study: two pretrained models (an MLP on digits 0-4, a CNN on all ten digits) on digits 5-9, each
    against scratch, then the two compared: which pretrained model, or none? About 3 minutes on 2 CPU cores.

    \b
    Examples:
      transferlab demo
      transferlab demo --out /tmp/demo --seeds 5 --sizes 5,all
    """
    from transferlab.cli.progress import RichProgress, print_sources, print_summary
    from transferlab.demo import demo as run_demo
    from transferlab.demo import demo_config

    cfg = _config(demo_config(), seeds, sizes, epochs, workers, no_cache, strategies,
                  schedule=schedule, design=_design(max_seeds, margin, augment, halving, splits), steps=steps,
                  budget_opts=_options(budget_opt, "--budget-opt"))
    from transferlab.tracking import trackers

    result = run_demo(out, cfg, callbacks=[RichProgress(), *trackers(track, out)], wait=wait)
    for r in result.studies:
        print_summary(r)
    print_sources(result)


@app.command()
def run(config: Optional[Path] = typer.Option(None, "--config", "-c", help="study file (TOML)"),
        model: Optional[list[str]] = typer.Option(None, help="model spec, e.g. demo:cnn; repeat it to compare models"),
        data: Optional[str] = typer.Option(None, help="data spec, e.g. demo:digits"),
        out: Optional[Path] = typer.Option(None, help="study folder (rerun into it to resume)"),
        seeds: Optional[int] = SEEDS, sizes: Optional[str] = SIZES, epochs: Optional[int] = EPOCHS,
        steps: Optional[int] = STEPS, budget_opt: Optional[list[str]] = BUDGET_OPT,
        workers: Optional[str] = WORKERS, no_cache: bool = NO_CACHE, strategies: Optional[str] = STRATS,
        weights: Optional[list[str]] = typer.Option(None, help="pretrained weights file (safetensors or a .pt state "
                                                   "dict); with several --model, one per model in order ('none': no file)"),
        model_opt: Optional[list[str]] = typer.Option(None, "--model-opt", help="model option key=value (repeatable)"),
        data_opt: Optional[list[str]] = typer.Option(None, "--data-opt", help="data option key=value (repeatable)"),
        save_best: Optional[Path] = typer.Option(None, "--save-best", help="folder for the recommended model"),
        executor: Optional[str] = typer.Option(None, help="inline | process | ray"),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (implies --executor ray)"),
        depths: Optional[str] = typer.Option(None, help="freeze_k depths: all, auto (from the profile) or e.g. 1,3"),
        schedule: Optional[str] = SCHEDULE, max_seeds: Optional[int] = MAX_SEEDS, margin: Optional[float] = MARGIN,
        augment: Optional[str] = AUGMENT, halving: Optional[bool] = HALVING, splits: Optional[str] = SPLITS,
        device: Optional[str] = DEVICE, track: Optional[list[str]] = TRACK, wait: bool = WAIT,
        time_budget: Optional[str] = TIME_BUDGET,
        dry_run: bool = typer.Option(False, "--dry-run", help="check everything, print the cost estimate, train nothing")):
    """Run a transfer study described by a study file or by --model and --data.

    Give --model more than once (or one "models" table per model in the study file) to ask which pretrained model to start from, or none: every model runs the same study and a comparison ranks them.

    \b
    Examples:
      transferlab run --config study.toml
      transferlab run --model demo:cnn --data demo:digits --out study-cnn --max-seeds 20 --margin 0.5
      transferlab run --model demo:cnn --data demo:digits --out study-fixed --seeds 5
      transferlab run --model demo:cnn --data demo:digits --out study-long --budget-opt min_steps=2000
      transferlab run --model demo:cnn --model demo:cnn10 --model demo:mlp --data demo:digits --out which-model
      transferlab run --model timm:resnet18 --weights r18.safetensors --model-opt in_chans=1 \\
          --data mnist:../shared/data/mnist --data-opt 'size=[32,32]' --data-opt max_per_class=100
      transferlab run --model hf:sentence-transformers/all-MiniLM-L6-v2 --data text:reviews.csv --save-best best
      transferlab run --model demo:cnn --data demo:digits --out study-cnn --track mlflow --track tensorboard
      transferlab run --model timm:resnet18 --weights r18.safetensors --data photos/ --dry-run
      transferlab run --model hf:sentence-transformers/all-MiniLM-L6-v2 --data text:reviews.csv --time-budget 30m
    """
    from transferlab.cli.progress import RichProgress, print_sources, print_summary
    from transferlab.config import read_study_file
    from transferlab.execution import run_study
    from transferlab.sources import resolve
    from transferlab.tracking import trackers

    file = read_study_file(config) if config else None
    models = _models(model, weights, file, _options(model_opt, "--model-opt"))
    data_spec = data or (file.data["spec"] if file else None)
    if not models or not data_spec:
        raise UserError("a study needs a model and data", "give --config FILE, or both --model SPEC and --data SPEC")
    cfg = _config(file.config if file else None, seeds, sizes, epochs, workers, no_cache, strategies, executor, ray_address, depths,
                  schedule, _design(max_seeds, margin, augment, halving, splits, time_budget), device, steps,
                  _options(budget_opt, "--budget-opt"))
    folder = out or (Path(file.out) if file and file.out else Path("transferlab-study"))
    data_options = {**{k: v for k, v in (file.data if file else {}).items() if k != "spec"}, **_options(data_opt, "--data-opt")}
    callbacks = [RichProgress(), *trackers(track, folder)]
    if dry_run:
        from transferlab.multisource import estimate_sources

        typer.echo(estimate_sources(models, data_spec, data_options, cfg, folder))
        return
    if len(models) > 1:
        from transferlab.multisource import run_sources, sources_from_specs

        if save_best:
            raise UserError("--save-best takes one model", "run the recommended source alone with --save-best")
        result = run_sources(sources_from_specs(models, data_spec, data_options), cfg, folder, callbacks,
                             meta={"data_options": data_options}, wait=wait)
        print_sources(result)
        return
    model_spec, model_options, _ = models[0]
    backbone, target = resolve(model_spec, data_spec, model_options, data_options)
    _warn_skipped(target)
    result = run_study(backbone, target, cfg, folder, callbacks, save_best=save_best,
                       meta={"model_options": model_options, "data_options": data_options}, wait=wait)
    print_summary(result)
    if save_best:
        typer.echo(f"saved model: {save_best}")


def _warn_skipped(data) -> None:
    """One line naming the unreadable files the data skipped (an empty or corrupt image), how many and the first."""
    n = data.split_info.get("skipped_files", 0)
    if n:
        print(f"transferlab: warning: skipped {n} unreadable file{'s' if n > 1 else ''} of {data.name} (first: "
              f"{data.split_info.get('first_skipped')})", file=sys.stderr)


def _models(specs, weights, file, cli_options: dict) -> list[tuple[str, dict, str | None]]:
    """(spec, options, name) per model: --model (with --weights in order), else the study file's models."""
    if specs:
        weights = list(weights or [])
        if weights and len(weights) != len(specs):
            raise UserError(f"{len(weights)} --weights for {len(specs)} --model",
                            "give one --weights per --model, in order ('none' for a model without a file)")
        files = weights or [None] * len(specs)
        return [(s, {**cli_options, **({"weights": w} if w and w != "none" else {})}, None) for s, w in zip(specs, files)]
    if weights:
        raise UserError("--weights needs --model", "give the model spec with --model, or the weights in the study file")
    if not file:
        return []
    return [(m["spec"], {**{k: v for k, v in m.items() if k not in ("spec", "name")}, **cli_options}, m.get("name"))
            for m in file.models]


@app.command("profile")
def profile_cmd(model: str = typer.Option(..., help="model spec, e.g. timm:resnet18"),
                data: str = typer.Option(..., help="data spec, e.g. images:photos/"),
                weights: Optional[str] = typer.Option(None, help="pretrained weights file"),
                model_opt: Optional[list[str]] = typer.Option(None, "--model-opt", help="model option key=value"),
                data_opt: Optional[list[str]] = typer.Option(None, "--data-opt", help="data option key=value"),
                out: Optional[Path] = typer.Option(None, help="write the profile as JSON here")):
    """Score every cut point before training: LogME, H-score, kNN and probe accuracy (LEEP, NCE with a source head).

    \b
    Example:
      transferlab profile --model demo:cnn --data demo:digits --out profile.json
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from transferlab.cache import FeatureCache
    from transferlab.measurements.profile import profile
    from transferlab.pipeline import eval_rows, prepare
    from transferlab.sources import resolve
    from transferlab.training import Budget

    opts = _options(model_opt, "--model-opt")
    if weights:
        opts["weights"] = weights
    backbone, target = resolve(model, data, opts, _options(data_opt, "--data-opt"))
    prepared = prepare(target, backbone)
    # Nothing reuses the activations afterwards: every cut is pooled batch by batch on the scored rows, in batches
    # of a bounded input size, so memory does not grow with the number of images.
    cache = FeatureCache(eval_rows(Budget(), prepared), memory_budget=0)
    prof = profile(backbone, prepared, cache)
    table = Table(title=f"per-layer transferability ({prof['seconds']:.1f} s)")
    for col in ("k", "after block", "dim", "LogME", "H-score", "kNN val %", "probe val %"):
        table.add_column(col, justify="right")
    for c in prof["cuts"]:
        table.add_row(str(c["k"]), c["name"], str(c["dim"]), f"{c['logme']:.3f}", f"{c['hscore']:.2f}",
                      f"{100 * c['knn_acc']:.1f}", f"{100 * c['probe_acc']:.1f}")
    Console().print(table)
    if prof["leep"] is not None:
        typer.echo(f"LEEP {prof['leep']:.3f}  NCE {prof['nce']:.3f}")
    if out:
        out.write_text(json.dumps(prof, indent=2))
        typer.echo(f"profile: {out}")


@app.command()
def layers(model: str = typer.Option(..., help="the pretrained model (A), e.g. demo:cnn"),
           data: str = typer.Option(..., help="the target data (B), e.g. demo:digits"),
           out: Path = typer.Option(..., help="a study folder: layers.json is written there and its report rebuilt"),
           weights: Optional[str] = typer.Option(None, help="pretrained weights file"),
           model_opt: Optional[list[str]] = typer.Option(None, "--model-opt", help="model option key=value"),
           data_opt: Optional[list[str]] = typer.Option(None, "--data-opt", help="data option key=value"),
           seeds: Optional[int] = SEEDS, sizes: Optional[str] = SIZES, epochs: Optional[int] = EPOCHS,
           steps: Optional[int] = STEPS, workers: Optional[str] = WORKERS, executor: Optional[str] = typer.Option(None, help="inline | process | ray"),
           device: Optional[str] = DEVICE, wait: bool = WAIT,
           dry_run: bool = typer.Option(False, "--dry-run", help="check everything, print the cost estimate, train nothing")):
    """Yosinski splice curves AnB, AnB+, BnB, BnB+ at every cut, into a study's report (rerun to resume).

    \b
    Example:
      transferlab run --model demo:cnn --data demo:digits --out study
      transferlab layers --model demo:cnn --data demo:digits --out study
    """
    from transferlab.cli.progress import console
    from transferlab.layers import run_layers
    from transferlab.report.html import write_report
    from transferlab.sources import resolve

    opts = _options(model_opt, "--model-opt")
    if weights:
        opts["weights"] = weights
    backbone, target = resolve(model, data, opts, _options(data_opt, "--data-opt"))
    cfg = _config(None, seeds, sizes, epochs, workers, False, None, executor, device=device, steps=steps)
    if dry_run:
        from transferlab.layers import estimate_layers

        typer.echo(estimate_layers(backbone, target, cfg, out).text() + "\nDry run: nothing was trained.")
        return
    run_layers(backbone, target, cfg, out, on_record=lambda r: console.print(
        f"[dim]{r['curve']:5s} n={r['n']} seed={r['seed']}: {100 * (r['test_acc'] or 0):.1f}%[/dim]"), wait=wait,
        on_wait=lambda holder: console.print(f"[dim]{out} is in use by {holder}; waiting for it to finish[/dim]"))
    if (out / "study.json").exists():
        typer.echo(f"report: {write_report(out)}")
    else:
        typer.echo(f"layers: {out / 'layers.json'} (run `transferlab run ... --out {out}` for the full report)")


@app.command()
def report(folder: Path = typer.Argument(..., help="a study folder, or a multi-source study's folder")):
    """Rebuild report.html from study.json and trials.jsonl alone (no torch needed).

    \b
    Examples:
      transferlab report transferlab-demo/cnn10
      transferlab report transferlab-demo
    """
    from transferlab.report.html import write_report

    if (folder / "sources.json").exists():
        from transferlab.report.sources import write_sources_report

        typer.echo(f"report: {write_sources_report(folder)}")
        return
    typer.echo(f"report: {write_report(folder)}")


@app.command()
def predict(model_dir: Path = typer.Argument(..., help="a folder written by --save-best"),
            data: str = typer.Option(..., help="data spec or path, labelled or not, e.g. new_photos/ or text:new.csv"),
            out: Path = typer.Option(Path("predictions.csv"), help="CSV to write"),
            data_opt: Optional[list[str]] = typer.Option(None, "--data-opt", help="data option key=value")):
    """Load a saved model (no pickle) and write its predictions as CSV.

    New inputs need no labels: a flat folder of images, a text file of one sentence per line, or a table without its
    label column give one row per input (its path, text or row number), the predicted class and each probability.

    \b
    Examples:
      transferlab predict best --data text:reviews.csv --out predictions.csv
      transferlab predict best --data new_photos/ --out predictions.csv
      transferlab predict best --data new_sentences.txt
    """
    from transferlab.saving import predict as run_predict

    typer.echo(f"predictions: {run_predict(model_dir, data, out, _options(data_opt, '--data-opt'))}")


@app.command("strategies")
def strategies_cmd():
    """List the registered strategies and their hyperparameters."""
    import dataclasses

    from transferlab.strategies.base import registry

    for name, cls in sorted(registry().items()):
        params = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls))
        typer.echo(f"{name:14s} {cls.summary}\n{'':14s} params: {params or '-'}")


# typer from 0.29 vendors click (typer._click), whose exceptions do not derive from click's: a bad option value
# raised past this handler as a traceback. Both families are caught, whichever typer is installed.
USAGE_ERRORS = tuple({click.exceptions.ClickException,
                      next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")})
ABORTS = tuple({click.exceptions.Abort, typer.Abort})


DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}  # the user's disk, not a bug


def main() -> None:
    from transferlab.threads import quiet_waiting

    quiet_waiting()  # before torch is imported: OpenMP reads it once
    debug = os.environ.get("TRANSFERLAB_DEBUG") == "1"
    try:
        code = app(standalone_mode=False)  # typer returns an Exit's code here, Ctrl-C's 130 included, not raises it
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and not isinstance(code, bool) and code:
            sys.exit(code)
    except UserError as exc:
        if debug:
            raise
        print(f"transferlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except USAGE_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OSError as exc:
        if debug or exc.errno not in DISK_ERRORS:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        fix = ("free some space (or give another --out)" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
               else "give paths you may read and an --out folder you may write")
        print(f"transferlab: error: {os.strerror(exc.errno).lower()}{where}. {fix}, then rerun the same command: "
              "finished trials are kept and the study resumes", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, *ABORTS):
        print("transferlab: interrupted; finished trials are saved, rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
