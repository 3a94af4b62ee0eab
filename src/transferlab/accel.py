"""The CUDA path: mixed precision, channels_last and pinned, non-blocking copies. Off (and harmless) on CPU."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from transferlab.data.base import Inputs, to_device, tree_map


def on_cuda(device) -> bool:
    return str(device).startswith("cuda")


def autocast(device):
    """bf16 autocast where the GPU supports it, fp16 otherwise; nothing on CPU."""
    if not on_cuda(device):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def prepare_model(model: nn.Module, device) -> nn.Module:
    model = model.to(device)
    if on_cuda(device) and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def move(x: Inputs, device) -> Inputs:
    """Host -> device through pinned memory, without blocking the host."""
    if not on_cuda(device):
        return to_device(x, device)
    x = tree_map(lambda t: t.pin_memory() if not t.is_pinned() else t, x)
    x = to_device(x, device, non_blocking=True)
    if torch.is_tensor(x) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
