"""What a middle block responds to: the train inputs that most activate its most active channels."""
from __future__ import annotations

import numpy as np
import torch

from transferlab.backbones.base import Backbone
from transferlab.cache import FeatureCache, pooled_pass
from transferlab.data.base import TargetData
from transferlab.data.imagestore import Images
from transferlab.measurements import Measurement, Preflight, register
from transferlab.moved import pooled


@torch.no_grad()
def top_activations(backbone: Backbone, data: TargetData, k: int | None = None, channels: int = 6, top: int = 6,
                    cache: FeatureCache | None = None, key: str = "inspect") -> dict:
    """For block ``k`` (default: the middle one), the train inputs that most activate its most active channels."""
    k = k or max(1, backbone.n_blocks // 2)
    backbone._check_k(k)
    cache = cache or FeatureCache()
    if cache.holds(backbone, key, data.train, k):
        acts = pooled(cache.states(backbone, key, "train", data.train, k).inputs)
    else:  # too big to hold: pooled batch by batch
        acts = pooled_pass(backbone, data.train, [k], cache.batch_size, cache.device)[k]
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
    elif (torch.is_tensor(x) or isinstance(x, Images)) and x.dim() == 4:
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


@register
class TopActivations(Measurement):
    name = "activations"
    profile = True

    def cuts(self, backbone):
        return [max(1, backbone.n_blocks // 2)]

    def measure(self, pf: Preflight) -> dict:
        return top_activations(pf.backbone, pf.data, cache=pf.cache, key=pf.key)
