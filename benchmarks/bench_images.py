"""Benchmark: peak memory and images/s on a big image folder, images held as float32 (before), as uint8, or
streamed from their files.

It writes a synthetic JPEG folder once (default 20,000 images of 256x256 in 10 classes, reused from the temp
folder), then runs each way in its own process, so that each peak RSS is its own:

1. load: the folder read into the study's splits at 224 px (50% train pool, 20% val, 30% test), preprocessed;
2. profile pass: the body of timm ``resnet18`` over the whole train pool in eval batches (what the per-layer
   profile and the frozen-feature cache read);
3. one fine-tuning epoch: every block training on ``--epoch-images`` training images, crop and flip augmentation.

``--old-src`` points at the ``src`` folder of a checkout from before uint8 storage (for example
``git worktree add /tmp/before 814ca2c``); the float32 way is run with that code, as users had it.

    python benchmarks/bench_images.py [--images 20000] [--counts 2500,20000] [--old-src /tmp/before/src]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10


def make_folder(root: Path, n: int, size: int) -> Path:
    """``n`` JPEGs in ``CLASSES`` class folders: smooth noise tinted by class, quality 90."""
    import numpy as np
    from PIL import Image

    done = root / f".done-{n}-{size}"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for i in range(n):
        c = i % CLASSES
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        small = rng.random((size // 16, size // 16, 3)) * 160
        small[..., c % 3] += 60 + 8 * c
        img = Image.fromarray(small.clip(0, 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        img.save(root / f"c{c}" / f"{i}.jpg", quality=90)
    done.write_text("")
    return root


def child(args) -> dict:
    """One way, one image count, in this process; returns its measurements."""
    import resource

    import torch

    from transferlab.data.images import image_target
    from transferlab.pipeline import prepare
    from transferlab.sources import build_checked, load_model
    from transferlab.fitloop import fit
    from transferlab.training import Budget, batched, param_groups

    torch.set_num_threads(args.threads)
    rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # noqa: E731  (MB, peak so far)
    out = {"way": args.way, "images": args.count}
    t0 = time.perf_counter()
    storage = {} if args.way == "float32" else {"storage": args.way}
    data = image_target(str(Path(args.folder) / "sub" / str(args.count)), size=(224, 224), channels=3,
                        augment="crop,flip", **storage)
    source = load_model("timm:resnet18")
    bb = build_checked(source, data)
    data = prepare(data, bb)
    out["load_s"], out["load_rss_mb"] = time.perf_counter() - t0, rss()
    if args.eval_batch != "auto":
        args.eval_batch = int(args.eval_batch)
    elif args.way == "float32":
        args.eval_batch = 512
    else:
        from transferlab.pipeline import eval_rows

        args.eval_batch = eval_rows(Budget(), data)
    out["eval_batch"] = args.eval_batch

    bb.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        feats = batched(lambda x: bb.features(x, bb.n_blocks), data.train.inputs, args.eval_batch)
    seconds = time.perf_counter() - t0
    out.update(profile_images=len(feats), profile_img_s=len(feats) / seconds, profile_rss_mb=rss())
    del feats

    from transferlab.data.augment import OnTheFlyViews, resolve

    n = min(args.epoch_images, len(data.train))
    idx = torch.arange(n)
    train, val = data.train.subset(idx), data.val.subset(torch.arange(min(256, len(data.val))))
    model = bb.clone()
    model.replace_head(CLASSES)
    aug = resolve("auto", data.augment, 8)
    views = OnTheFlyViews(aug, train.inputs, idx, len(data.train))
    budget = Budget(epochs=1, patience=1, batch_size=32, lrs=(1e-3,), eval_batch_size=args.eval_batch)
    t0 = time.perf_counter()
    fit(model, param_groups(list(model.blocks.values()), model.head, 1e-3), train, val, budget,
        torch.Generator().manual_seed(0), views=views)
    seconds = time.perf_counter() - t0
    out.update(epoch_images=n, epoch_img_s=n / seconds, epoch_rss_mb=rss(), peak_rss_mb=rss())
    return out


def subset_folder(folder: Path, count: int) -> Path:
    """The first ``count`` images of the folder as a folder of links (the same files, no copies)."""
    sub = folder / "sub" / str(count)
    if sub.exists():
        return sub
    files = sorted((p for p in folder.glob("c*/*.jpg")), key=lambda p: int(p.stem))[:count]
    for p in files:
        (sub / p.parent.name).mkdir(parents=True, exist_ok=True)
        os.symlink(p, sub / p.parent.name / p.name)
    return sub


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--counts", default="2500,20000", help="image counts to measure (each at most --images)")
    ap.add_argument("--ways", default="float32,memory,stream")
    ap.add_argument("--old-src", default=None, help="src/ of a checkout from before uint8 storage (runs float32)")
    ap.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "transferlab-bench-jpeg"))
    ap.add_argument("--epoch-images", type=int, default=640)
    ap.add_argument("--eval-batch", default="auto", help="auto: 512 for float32 (its default then), the study's rule else")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--float32-max", type=int, default=5000, help="float32 needs about 1.2 MB per image: skip above")
    ap.add_argument("--way"), ap.add_argument("--count", type=int)
    args = ap.parse_args()
    if args.way:  # the child
        print(json.dumps(child(args)))
        return
    folder = Path(args.folder)
    t0 = time.perf_counter()
    make_folder(folder, args.images, 256)
    print(f"folder: {folder} ({args.images} JPEGs of 256x256; {time.perf_counter() - t0:.0f} s)", flush=True)
    rows = []
    for count in (int(c) for c in args.counts.split(",")):
        subset_folder(folder, count)
        for way in args.ways.split(","):
            if way == "float32" and (args.old_src is None or count > args.float32_max):
                why = "no --old-src" if args.old_src is None else f"needs about {1.2 * count / 1000:.0f} GB"
                print(f"{way:8} {count:6d}: skipped ({why})", flush=True)
                continue
            env = dict(os.environ, PYTHONPATH=str(args.old_src if way == "float32" else ROOT / "src"),
                       OMP_NUM_THREADS=str(args.threads))
            cmd = [sys.executable, __file__, "--way", way, "--count", str(count), "--folder", str(folder),
                   "--epoch-images", str(args.epoch_images), "--eval-batch", str(args.eval_batch),
                   "--threads", str(args.threads)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if res.returncode != 0:
                print(f"{way:8} {count:6d}: failed\n{res.stderr[-1500:]}", flush=True)
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{way:8} {count:6d}: load {r['load_s']:6.1f} s, RSS {r['load_rss_mb']:6.0f} MB | profile pass "
                  f"{r['profile_img_s']:6.1f} img/s (batch {r['eval_batch']}), RSS {r['profile_rss_mb']:6.0f} MB | fine-tune epoch "
                  f"{r['epoch_img_s']:5.1f} img/s, peak RSS {r['peak_rss_mb']:6.0f} MB", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
