"""Per-layer transferability before training, and what fine-tuning moved after.

``profile`` makes one pass over the target train pool and validation split,
yielding the activations at every cut, and scores each cut: LogME, H-score, kNN and
linear-probe validation accuracy; LEEP and NCE once for the source classifier.
Feature maps are average-pooled over space, token states averaged over the mask,
so every cut is a (n, channels) matrix.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from transferlab.analysis import transferability as tr
from transferlab.analysis.cka import linear_cka
from transferlab.backbones.base import Backbone
from transferlab.cache import FeatureCache
from transferlab.data.base import Split, TargetData, take

MAX_ROWS = 2000  # scores on at most this many train examples (stratified), to keep the profile a small cost


def pooled(states) -> np.ndarray:
    """(n, d) view of a cut's activations."""
    if isinstance(states, (tuple, list)):  # (hidden, mask): mean over real tokens
        hidden, mask = states
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * m).sum(1) / m.sum(1).clamp(min=1)).numpy()
    if states.dim() > 2:
        return states.float().mean(dim=tuple(range(2, states.dim()))).numpy()
    return states.float().numpy()


def _rows(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(y) <= limit:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=y, random_state=seed)
    return np.sort(keep)


def profile(backbone: Backbone, data: TargetData, cache: FeatureCache | None = None, key: str = "profile",
            seed: int = 0) -> dict:
    """Scores per cut of the (already preprocessed) target data."""
    t0 = time.perf_counter()
    cache = cache or FeatureCache()
    cache.want(range(1, backbone.n_blocks + 1))
    idx = _rows(data.train.y.numpy(), MAX_ROWS, seed)
    ytr, yval = data.train.y.numpy()[idx], data.val.y.numpy()
    rows = []
    for k in range(1, backbone.n_blocks + 1):
        xtr = pooled(take(cache.states(backbone, key, "train", data.train, k).inputs, torch.as_tensor(idx)))
        xval = pooled(cache.states(backbone, key, "val", data.val, k).inputs)
        rows.append({"k": k, "name": backbone.block_names[k - 1], "dim": int(xtr.shape[1]),
                     "logme": tr.logme(xtr, ytr), "hscore": tr.hscore(xtr, ytr),
                     "knn_acc": tr.knn_accuracy(xtr, ytr, xval, yval), "probe_acc": tr.probe_accuracy(xtr, ytr, xval, yval, seed)})
    out = {"cuts": rows, "n_train": int(len(idx)), "leep": None, "nce": None}
    if backbone.class_names:  # the source head is still there: score its predictions on the target
        last = cache.states(backbone, key, "train", data.train, backbone.n_blocks).inputs
        with torch.no_grad():
            probs = torch.softmax(backbone.eval().head(take(last, torch.as_tensor(idx))).float(), 1).numpy()
        out["leep"], out["nce"] = tr.leep(probs, ytr), tr.nce(probs, ytr)
    if data.source is not None:
        xs = pooled(cache.states(backbone, key, "source", data.source, backbone.n_blocks).inputs)
        xt = pooled(cache.states(backbone, key, "train", data.train, backbone.n_blocks).inputs)
        out["a_distance"] = tr.a_distance(xs, xt, seed)
    out["seconds"] = time.perf_counter() - t0
    return out


@torch.no_grad()
def what_moved(pretrained: Backbone, tuned: Backbone, inputs: Split, max_rows: int = 256) -> list[dict]:
    """Per block: relative weight change ||W - W0|| / ||W0|| and linear CKA of its activations before/after."""
    x = take(inputs.inputs, torch.arange(min(max_rows, len(inputs))))
    pretrained.eval(), tuned.eval()
    a, b = x, x
    rows = []
    for name in pretrained.block_names:
        p0 = torch.cat([p.detach().flatten().float() for p in pretrained.blocks[name].parameters()] or [torch.zeros(1)])
        p1 = torch.cat([p.detach().cpu().flatten().float() for p in tuned.blocks[name].parameters()] or [torch.zeros(1)])
        a, b = pretrained.blocks[name](a), tuned.blocks[name](b)
        change = float((p1 - p0).norm() / p0.norm()) if p0.norm() > 0 else 0.0
        rows.append({"block": name, "weight_change": change, "cka": linear_cka(pooled(a), pooled(b))})
    return rows


@torch.no_grad()
def top_activations(backbone: Backbone, data: TargetData, k: int | None = None, channels: int = 6, top: int = 6,
                    cache: FeatureCache | None = None, key: str = "inspect") -> dict:
    """For block ``k`` (default: the middle one), the train inputs that most activate its most active channels."""
    k = k or max(1, backbone.n_blocks // 2)
    backbone._check_k(k)
    cache = cache or FeatureCache()
    acts = pooled(cache.states(backbone, key, "train", data.train, k).inputs)
    chosen = np.argsort(-acts.mean(0))[:channels]
    out = {"k": k, "block": backbone.block_names[k - 1], "channels": []}
    for c in chosen:
        idx = np.argsort(-acts[:, c])[:top]
        out["channels"].append({"channel": int(c), "mean": float(acts[:, c].mean()), "top": idx.tolist(),
                                "labels": [data.class_names[int(data.train.y[i])] for i in idx]})
    x = data.train.inputs
    pre = backbone.preprocessing
    if pre.kind == "text" and isinstance(x, dict):
        from transferlab.backbones.base import _tokenizer

        tok = _tokenizer(pre.extra["tokenizer"])
        for ch in out["channels"]:
            ch["snippets"] = [tok.decode(x["input_ids"][i][x["attention_mask"][i].bool()], skip_special_tokens=True)
                              for i in ch["top"]]
    elif torch.is_tensor(x) and x.dim() == 4:
        out["grid_png"] = _grid(x, pre, out["channels"])
    return out


def _grid(x: torch.Tensor, pre, channels: list[dict]) -> str:
    """One row per channel, its top inputs un-normalised for display; a base64 PNG."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(channels), len(channels[0]["top"])
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows), squeeze=False)
    mean = torch.tensor(pre.mean or (0.0,)).view(-1, 1, 1)
    std = torch.tensor(pre.std or (1.0,)).view(-1, 1, 1)
    for r, ch in enumerate(channels):
        for c, i in enumerate(ch["top"]):
            img = (x[i] * std + mean).clamp(0, 1) if pre.mean else x[i]
            img = img.permute(1, 2, 0).numpy()
            axes[r][c].imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            axes[r][c].set_xticks([]), axes[r][c].set_yticks([])
            axes[r][c].set_title(ch["labels"][c], fontsize=7)
        axes[r][0].set_ylabel(f"ch {ch['channel']}", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
