"""What fine-tuning moved: per block, how far the weights went and how similar the activations stayed.

``pooled`` turns any cut's activations into an (n, channels) matrix (feature maps average-pooled over
space, token states averaged over the mask), the form every per-layer score reads.
"""
from __future__ import annotations

import numpy as np
import torch

from transferlab.analysis.cka import linear_cka
from transferlab.backbones.base import Backbone, pool_state
from transferlab.data.base import Split, take, to_device


def pooled(states) -> np.ndarray:
    """(n, d) view of a cut's activations (``backbones.base.pool_state``, as numpy)."""
    return pool_state(states).float().numpy()


@torch.no_grad()
def what_moved(pretrained: Backbone, tuned: Backbone, inputs: Split, max_rows: int = 256) -> list[dict]:
    """Per block: relative weight change ||W - W0|| / ||W0|| and linear CKA of its activations before/after."""
    from transferlab.accel import device_of, move, placed

    device = device_of(tuned)  # where it trained; the pretrained model is copied there, never moved
    pretrained = placed(pretrained, device)
    x = move(take(inputs.inputs, torch.arange(min(max_rows, len(inputs)))), device)
    pretrained.eval(), tuned.eval()
    a, b = x, x
    rows = []
    kept = tuned.kept_from or tuned.n_blocks  # a truncated network: the blocks after its cut were removed
    for name in pretrained.block_names[:kept]:
        p0 = torch.cat([p.detach().cpu().flatten().float() for p in pretrained.blocks[name].parameters()] or [torch.zeros(1)])
        p1 = torch.cat([p.detach().cpu().flatten().float() for p in tuned.blocks[name].parameters()] or [torch.zeros(1)])
        a, b = pretrained.blocks[name](a), tuned.blocks[name](b)
        change = float((p1 - p0).norm() / p0.norm()) if p0.norm() > 0 else 0.0
        rows.append({"block": name, "weight_change": change, "cka": linear_cka(pooled(to_device(a, "cpu")), pooled(to_device(b, "cpu")))})
    return rows
