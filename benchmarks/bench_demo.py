"""The README's first command after the install: ``transferlab demo``, timed from an empty model cache.

Runs the demo in a subprocess, as a user would, with ``TRANSFERLAB_CACHE`` pointed at a new folder (so the two
source models are pretrained inside the measured time) and prints its wall time, peak RSS, trials, the share
that converged and the comparisons with scratch decided. Run it with nothing else on the cores.

    python benchmarks/bench_demo.py [--out DIR]    # --out: keep the demo's folder (its reports) there
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="keep the demo's folder here (it must not exist yet)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "demo"
        env = {**os.environ, "TRANSFERLAB_CACHE": str(Path(tmp) / "cache")}
        t0 = time.perf_counter()
        cli = [sys.executable, "-c", "from transferlab.cli.app import main; main()"]
        res = subprocess.run([*cli, "demo", "--out", str(out)], env=env,
                             capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode != 0:
            sys.exit(res.stderr)
        rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
        trials = [json.loads(line) for f in out.glob("*/trials.jsonl") for line in f.read_text().splitlines()]
        trained = [t for t in trials if t["strategy"] != "zero_shot"]
        converged = sum(1 for t in trained if t.get("converged"))
        decided = [json.loads(f.read_text())["decided"] for f in sorted(out.glob("*/analysis.json"))]
        n_dec, n_all = sum(d["decided"] for d in decided), sum(d["total"] for d in decided)
        m, s = divmod(round(wall), 60)
        print(f"transferlab demo: {m} min {s:02d} s wall, peak RSS {rss_gb:.2f} GB (one process), "
              f"{len(trained)} trials, {converged / max(1, len(trained)):.0%} converged, "
              f"{n_dec} of {n_all} comparisons with scratch decided ({os.cpu_count()} CPUs visible)")


if __name__ == "__main__":
    main()
