"""Where tensors and models live, decided in one place: the CUDA path (mixed precision with a gradient scaler
for fp16, channels_last, pinned non-blocking copies) and ``placed``, which puts a model on a device without
moving the caller's object (the shared pretrained model stays where it is). Off, and harmless, on CPU."""
from __future__ import annotations

import contextlib
import copy

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


def same_device(a, b) -> bool:
    a, b = torch.device(a), torch.device(b)
    if a.type == "cuda" and b.type == "cuda":  # "cuda" means the current device
        return (a.index if a.index is not None else torch.cuda.current_device()) == (
            b.index if b.index is not None else torch.cuda.current_device())
    return a.type == b.type


def device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def placed(module: nn.Module, device) -> nn.Module:
    """``module`` itself when it is on ``device`` already, else a copy there: the caller's model never moves."""
    if same_device(device_of(module), device):
        return module
    return copy.deepcopy(module).to(device)


def grad_scaler(device) -> torch.amp.GradScaler:
    """Scales the loss when autocast runs in fp16 (its gradients underflow otherwise); a no-op for bf16 and CPU."""
    fp16 = on_cuda(device) and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda", enabled=fp16)


def prepare_model(model: nn.Module, device) -> nn.Module:
    model = model.to(device)
    if on_cuda(device) and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def move(x: Inputs, device) -> Inputs:
    """Host -> device through pinned memory, without blocking the host."""
    if not on_cuda(device):
        return to_device(x, device)
    # Already there (a batch augmented on the device): nothing to copy. Else through pinned host memory.
    x = tree_map(lambda t: t if t.is_cuda or t.is_pinned() else t.pin_memory(), x)
    x = to_device(x, device, non_blocking=True)
    if torch.is_tensor(x) and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
