"""Any torch ``nn.Module`` as a Backbone, and checkpoints loaded without unpickling code.

Blocks are the model's child modules in the order a forward pass runs them
(found with hooks on the example batch), grouped so that each block starts at a
layer with weights; or cut after modules you name.  The head is the last Linear
(or the module you name).  The result is checked against the model's own
forward on the example batch: a model whose forward does more than call its
children in order is refused with a message, never silently mis-split.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from transferlab.backbones.base import _NORM_TYPES, Backbone, Preprocessing
from transferlab.errors import UserError


def execution_order(model: nn.Module, example, names: Sequence[str]) -> list[str]:
    """Names (among ``names``) in the order their modules first run on ``example``."""
    order: list[str] = []
    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_pre_hook(lambda m, a, n=n: order.append(n) if n not in order else None)
             for n in names]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def linearize(model: nn.Module, cuts: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """Children in definition order; a Sequential, or a child holding a named cut deeper inside, is expanded."""
    out = []
    for name, child in model.named_children():
        inner = [c[len(name) + 1:] for c in cuts if c.startswith(name + ".")]
        if inner or (isinstance(child, nn.Sequential) and name not in cuts):
            out.extend((f"{name}.{n}", m) for n, m in linearize(child, inner))
        else:
            out.append((name, child))
    return out


class Flatten(nn.Flatten):
    """Inserted where the model's forward flattens between two children (e.g. pool -> fc)."""


def _weighted(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) and not isinstance(module, (*_NORM_TYPES, nn.LayerNorm))


def group_blocks(parts: list[tuple[str, nn.Module]], cuts: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """Group modules into blocks: a block ends after each named cut, or else starts at each weighted layer."""
    groups: list[list[tuple[str, nn.Module]]] = [[]]
    weighted = False
    for name, module in parts:
        if not cuts and _weighted(module) and weighted:
            groups.append([])
        weighted = weighted or _weighted(module)
        groups[-1].append((name, module))
        if name in cuts:
            groups.append([])
            weighted = False
    groups = [g for g in groups if g]
    if cuts and len(groups) > 1 and not any(n in cuts for n, _ in groups[-1]):
        groups[-2].extend(groups.pop())  # pooling after the last cut joins the last block
    def name(g):
        named = [n for n, _ in g if n in cuts]
        return (named[-1] if named else g[-1][0] if cuts else g[0][0]).replace(".", "_")

    return [(name(g), nn.Sequential(*[m for _, m in g])) for g in groups]


def from_module(model: nn.Module, example_input, blocks: Sequence[str] | None = None, head: str | None = None,
                preprocessing: Preprocessing | None = None, class_names=None, spec: dict | None = None,
                check: bool = True) -> Backbone:
    """Adapt ``model``: ``blocks`` are module names to cut after; ``head`` the classifier's name."""
    cuts = list(blocks or [])
    modules = dict(model.named_modules())
    for n in [*cuts, *([head] if head else [])]:
        if n not in modules:
            from transferlab.errors import closest

            raise UserError(f"the model has no module '{n}'{closest(n, modules)}", "name modules as model.named_modules() lists them")
    parts = linearize(model, [*cuts, *([head] if head else [])])
    ran = execution_order(model, example_input, [n for n, _ in parts])
    parts = [(n, dict(parts)[n]) for n in ran]
    if head is None:
        linears = [n for n, m in parts if isinstance(m, nn.Linear)]
        if not linears:
            raise UserError("could not find the head: the model has no nn.Linear child", "name the classifier with head='...'")
        head = linears[-1]
    at = [n for n, _ in parts].index(head)
    if at + 1 < len(parts):
        extra = ", ".join(n for n, _ in parts[at + 1:])
        raise UserError(f"modules run after the head '{head}' ({extra})", "name the last module as the head, or wrap the model")
    body = group_blocks(parts[:at], cuts)
    head_module = dict(parts)[head]
    body = _insert_flatten(body, example_input)
    bb = Backbone(body, head_module, example_input, preprocessing, class_names, spec)
    if check:
        _check_same_output(model, bb, example_input)
    return bb


def _insert_flatten(body, example):
    """Flatten where the model's forward does: before a block that starts with a Linear fed feature maps,
    and after the last block if it still outputs maps (an (N, C, 1, 1) pool)."""
    state = example
    with torch.no_grad():
        for i, (name, block) in enumerate(body):
            first = next((m for m in block if _weighted(m)), None)
            if isinstance(first, nn.Linear) and torch.is_tensor(state) and state.dim() > 2:
                block = nn.Sequential(Flatten(), *block)
                body[i] = (name, block)
            state = block.eval()(state)
    if torch.is_tensor(state) and state.dim() > 2:
        name, last = body[-1]
        body[-1] = (name, nn.Sequential(*last, Flatten()))
    return body


def _check_same_output(model: nn.Module, bb: Backbone, example) -> None:
    model.eval(), bb.eval()
    with torch.no_grad():
        want = model(example)
        want = getattr(want, "logits", want)
        got = bb(example)
    if not torch.is_tensor(want) or want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=1e-5):
        raise UserError("running the model's children in order does not reproduce its forward()",
                        "name the blocks explicitly (blocks=[...]), or express the model as an nn.Sequential")


# ---- checkpoints -----------------------------------------------------------------
def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """safetensors, or a .pt/.pth state dict read with weights_only=True (no code runs)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"weights file {path} does not exist", "check the path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise UserError(f"{path} is not a readable safetensors file ({exc})", "re-save it with safetensors.torch.save_file") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError and friends: the file needs arbitrary unpickling
        raise UserError(f"{path} cannot be loaded safely: it is a pickle of Python objects, not a state dict ({type(exc).__name__})",
                        "in the trusted environment that made it, save model.state_dict() with torch.save or safetensors") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise UserError(f"{path} does not hold a state dict of tensors", "save model.state_dict()")
    return obj


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    if bad:
        k = bad[0]
        raise UserError(f"weights in {source} do not match the architecture: '{k}' is {tuple(state[k].shape)} in the file "
                        f"but {tuple(own[k].shape)} in the model ({len(bad)} mismatches)",
                        "pair the weights with the architecture that produced them")
    if missing and len(missing) == len(own):
        raise UserError(f"no weight in {source} matches a parameter name of the model", "pair the weights with the architecture that produced them")
    model.load_state_dict(state, strict=False)


def import_class(path: str):
    """``package.module:ClassName`` -> the class (the user's own code, imported as a module)."""
    mod_name, _, cls_name = path.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise UserError(f"cannot import module '{mod_name}' ({exc})", "make it importable (pip install -e . or PYTHONPATH)") from None
    if not hasattr(module, cls_name):
        raise UserError(f"module '{mod_name}' has no class '{cls_name}'", "write the spec as package.module:ClassName")
    return getattr(module, cls_name)
