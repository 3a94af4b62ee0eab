"""Where tensors and models live, decided in one place: the CUDA path (mixed precision with a gradient scaler
for fp16, pinned non-blocking copies), the memory layout (channels_last where it is faster), and ``placed``, which
puts a model on a device without moving the caller's object (the shared pretrained model stays where it is).
"""
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


def channels_last(model: nn.Module, device) -> bool:
    """Whether ``model`` runs in channels_last on ``device``: any CNN on a GPU; on the CPU a CNN whose network has
    grouped or depthwise convolutions, whose oneDNN kernels are much faster in it (2 cores, a training step at
    64 px: EfficientNet-Lite1 1.50x, MobileNetV3 1.42x, RegNetX 1.24x), where a plain CNN gains nothing or loses
    (resnet18 0.87x, the demo CNN 1.05x; ``benchmarks/bench_layout.py``). A part of a network (a suffix, a
    truncated network) goes by the whole one (``Backbone.has_grouped_convs``), as its cache does."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    if on_cuda(device):
        return True
    whole = getattr(model, "_modes", model)  # a Backbone's suffix keeps its network here
    grouped = getattr(whole, "has_grouped_convs", None)
    return str(device) == "cpu" and (grouped_convs(model) if grouped is None else grouped)


def grouped_convs(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())


def prepare_model(model: nn.Module, device) -> nn.Module:
    """``model`` on ``device``, in channels_last where that is faster there (``channels_last``). Its weights carry
    the layout, so each convolution's output follows it."""
    model = model.to(device)
    if channels_last(model, device):
        model = model.to(memory_format=torch.channels_last)
    return model


def inference_copy(module: nn.Module, device) -> nn.Module:
    """``module`` laid out as ``prepare_model`` lays out a trained one, for forward passes whose outputs must
    equal training's (the cached prefix); a copy where that would change the caller's object."""
    placed_module = placed(module, device)
    if not channels_last(placed_module, device):
        return placed_module
    if placed_module is module:
        placed_module = copy.deepcopy(module)
    return placed_module.to(memory_format=torch.channels_last)


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
