"""Peak memory against the number of images: ``transferlab profile`` (and optionally a small study) on
the synthetic folder of 256-px JPEGs in 10 classes that ``bench_images.py`` writes, at 5,000 and 20,000 images.

Memory should be flat in the number of images: the profile scores at most ``profile.MAX_ROWS`` examples, and
images stream from their files once their pixels outgrow memory.  Each run is its own process, measured by GNU time
(``/usr/bin/time -f %M``, the largest resident set of the process and the workers it waited for).

    python benchmarks/bench_memory.py                          # the folder under the temp folder, made once
    python benchmarks/bench_memory.py --counts 5000,20000 --study
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_images import make_folder, subset_folder  # the synthetic JPEG folder bench_images.py writes


def peak_of(cmd: list[str], src: str | None = None) -> tuple[float, float, int]:
    """(peak RSS in GB, seconds, exit status) of one command, from GNU time's maximum resident set size (each run
    measured alone: ``ru_maxrss`` of children in this process would be the largest of all runs so far)."""
    env = {**os.environ, **({"PYTHONPATH": src} if src else {})}
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as rep:
        t0 = time.perf_counter()
        rc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rep.name, *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env).returncode
        kb = int(Path(rep.name).read_text().split()[-1])
    return kb / 2**20, time.perf_counter() - t0, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "transferlab-bench-jpeg"))
    ap.add_argument("--counts", default="5000,20000")
    ap.add_argument("--model", default="timm:mobilenetv3_small_050")
    ap.add_argument("--src", default=None, help="run the src folder of another checkout (PYTHONPATH), e.g. the code before")
    ap.add_argument("--study", action="store_true", help="also a small study (head, scratch; 5 per class; 1 seed)")
    args = ap.parse_args()
    exe = [str(Path(sys.executable).parent / "transferlab")]
    counts = sorted(int(c) for c in args.counts.split(","))
    t0 = time.perf_counter()
    root = make_folder(Path(args.root), counts[-1], 256)
    print(f"{counts[-1]} images of 256 px in {root} ({time.perf_counter() - t0:.0f} s to make or find)", flush=True)
    for n in counts:
        folder = subset_folder(root, n)
        print(f"{n} images ({folder})", flush=True)
        gb, s, rc = peak_of([*exe, "profile", "--model", args.model, "--data", f"images:{folder}"], args.src)
        print(f"  profile: peak RSS {gb:.2f} GB, {s:.0f} s, exit {rc}", flush=True)
        if args.study:
            out = root / f"study-{n}"
            gb, s, rc = peak_of([*exe, "run", "--model", args.model, "--data", f"images:{folder}", "--out", str(out),
                                 "--strategies", "head,scratch", "--sizes", "5", "--seeds", "1", "--steps", "20"], args.src)
            print(f"  study:   peak RSS {gb:.2f} GB, {s:.0f} s, exit {rc}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
