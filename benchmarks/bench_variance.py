"""Where a paired difference's variance comes from, read from finished studies (no training).

For every comparison with scratch in each study folder given, the variance of its mean difference split into:
- **seeds**: the paired differences' spread over seeds, over n (the initialisation, batch order and augmentation;
  at a size below ``all`` the training subset too; with per-seed splits, which examples landed in test as well);
- **test**: the shared test split's per-example term (``analysis.stats.example_variance``; 0 when each seed drew its
  own test split, where that variance sits inside the seeds' spread instead).
Then, per size, the median seed SD (one seed's paired difference) and the median test term, so a study that
redraws test per seed can be set beside one that keeps it fixed.  At size ``all`` every seed trains on the whole
pool, so there the seeds vary only the initialisation, order and augmentation: the gap between a small size's seed
SD and the ``all`` size's is what the training subset adds.

    python benchmarks/bench_variance.py STUDY_FOLDER [STUDY_FOLDER ...]
    python benchmarks/bench_variance.py transferlab-demo/mlp transferlab-demo/cnn10
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from transferlab.analysis.gain import gains
from transferlab.analysis.stats import Design


def rows(folder: Path) -> list[dict]:
    study = json.loads((folder / "study.json").read_text())
    records = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines() if line.strip()]
    design = Design.from_dict(study.get("design"))
    out = []
    for g in gains(records, design):
        c = g["gain"]
        if c["n"] < 2 or not math.isfinite(c["sd"]):
            continue
        seeds_var, test_var = c["sd"] ** 2 / c["n"], c.get("test_var") or 0.0
        out.append({"label": g["label"], "n_train": g["n_train"], "n": c["n"], "sd": c["sd"],
                    "seeds_var": seeds_var, "test_var": test_var, "verdict": str(g["verdict"]),
                    "per_seed_test": bool(study["data"]["splits"].get("test_per_seed", study["data"]["splits"].get("per_seed")))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    for folder in parser.parse_args().folders:
        table = rows(folder)
        mode = "test redrawn per seed" if table and table[0]["per_seed_test"] else "one test split"
        print(f"\n{folder} ({mode})")
        print("| comparison | size | seeds | SD of one seed's difference, pp | SE from seeds, pp | SE from the test split, pp | test share of the variance | verdict |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        for r in table:
            total = r["seeds_var"] + r["test_var"]
            print(f"| {r['label']} | {r['n_train']} | {r['n']} | {100 * r['sd']:.1f} | {100 * math.sqrt(r['seeds_var']):.2f} | "
                  f"{100 * math.sqrt(r['test_var']):.2f} | {r['test_var'] / total if total else 0:.0%} | {r['verdict']} |")
        for size in dict.fromkeys(r["n_train"] for r in table):
            at = [r for r in table if r["n_train"] == size]
            print(f"size {size}: median seed SD {100 * np.median([r['sd'] for r in at]):.1f} pp, median test term "
                  f"{100 * np.median([math.sqrt(r['test_var']) for r in at]):.2f} pp (as an SE)")


if __name__ == "__main__":
    main()
