"""Keep the winner: the recommended strategy's trained model as safetensors + JSON, loaded back without pickle.

The JSON says how to rebuild the architecture (its source spec and options),
the blocks, the head, the class names and the preprocessing; the weights file
holds every tensor.  A winning linear probe is folded into a Linear head, so
every saved model is a plain Backbone; a probe or a truncated network at cut k is saved as the smaller
network it is (blocks 1..k, a pool, the head), which is what ``predict`` runs.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from transferlab.backbones.base import Backbone, Preprocessing, Standardize
from transferlab.data.base import Split, n_rows, take
from transferlab.errors import UserError
from transferlab.results import temp_beside, write_atomic

FORMAT = 4  # 4: a truncated network ("keep": its first blocks, then a pool); 3: a head may start with a Standardize layer; 2: layer by layer (Linear, ReLU, Dropout); 1: Linear sizes
HEAD_LAYERS = {"linear": nn.Linear, "relu": nn.ReLU, "dropout": nn.Dropout, "standardize": Standardize}


def _fold_linear(pipe, n_classes: int) -> nn.Linear:
    from transferlab.strategies.lpft import fold_probe

    weight, bias = fold_probe(pipe, n_classes)
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return layer


def save_model(fitted, pretrained: Backbone, out_dir: str | Path, class_names: list[str], label: str,
               source_options: dict | None = None, table: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``model.json`` for one trained trial.  ``table``: a table's feature columns
    and categories (``features``, ``categories`` of its ``split_info``), so ``predict`` encodes new rows alike."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(fitted.model, Backbone):
        model = fitted.model
    else:  # a scikit-learn probe on frozen features at cut k: the network truncated there, the probe as its head
        model = pretrained.clone().truncate(fitted.frozen_blocks)
        model.head = nn.Sequential(_fold_linear(fitted.model, len(class_names)))
    model = model.cpu()
    head = _head_layers(model.head)
    meta = {
        "format": FORMAT, "strategy": label, "source": pretrained.spec, "source_options": source_options or {},
        "blocks": model.block_names, "head": head, "keep": model.kept_from,
        "params": sum(p.numel() for p in model.parameters()),
        "class_names": class_names, "preprocessing": model.preprocessing.to_dict(),
        **({"features": table["features"], "categories": table.get("categories", {})} if table and table.get("features") else {}),
    }
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = temp_beside(out / "model.safetensors")
    try:
        save_file(tensors, str(tmp))
        os.replace(tmp, out / "model.safetensors")
    finally:
        tmp.unlink(missing_ok=True)
    write_atomic(out / "model.json", json.dumps(meta, indent=2))
    return out


def _head_layers(head: nn.Module) -> list[dict]:
    """The head as plain data, one entry per layer in order, so it is rebuilt with the same module indices."""
    mods = list(head) if isinstance(head, nn.Sequential) else [head]
    out = []
    for m in mods:
        if isinstance(m, nn.Linear):
            out.append({"type": "linear", "in": m.in_features, "out": m.out_features})
        elif isinstance(m, nn.ReLU):
            out.append({"type": "relu"})
        elif isinstance(m, nn.Dropout):
            out.append({"type": "dropout", "p": m.p})
        elif isinstance(m, Standardize):
            out.append({"type": "standardize", "dim": len(m.mean)})
        else:
            raise UserError(f"cannot save a head with a {type(m).__name__} layer", "save the model with torch.save instead")
    return out


def _head_from(meta: dict) -> nn.Module:
    if "head" not in meta:  # format 1: Linear sizes only, ReLU between them
        layers = [{"type": "linear", **x} for x in meta["head_layers"]]
        layers = [y for x in layers for y in (x, {"type": "relu"})][:-1]
    else:
        layers = meta["head"]
    args = {"linear": lambda x: (x["in"], x["out"]), "relu": lambda x: (), "dropout": lambda x: (x["p"],),
            "standardize": lambda x: (x["dim"],)}
    return nn.Sequential(*[HEAD_LAYERS[x["type"]](*args[x["type"]](x)) for x in layers])


def load_saved(model_dir: str | Path) -> tuple[Backbone, dict]:
    from transferlab.registry import accepted_options
    from transferlab.sources import MODEL_SOURCES, load_model

    d = Path(model_dir)
    if not (d / "model.json").exists() or not (d / "model.safetensors").exists():
        raise UserError(f"{d} does not hold a saved model (model.json + model.safetensors)", "save one with --save-best")
    meta = json.loads((d / "model.json").read_text())
    if meta.get("format", 1) > FORMAT:
        raise UserError(f"{d} was saved by a newer transferlab (model format {meta['format']}, this one reads up to {FORMAT})",
                        "upgrade transferlab: pip install -U transferlab")
    pre = Preprocessing.from_dict(meta["preprocessing"])
    # The architecture alone: the saved file holds every weight, so no pretrained weights are loaded or trained.
    options = {k: v for k, v in meta["source_options"].items() if k not in ("weights", "pretrained")}
    scheme = meta["source"]["source"].partition(":")[0]
    if "pretrained" in (accepted_options(MODEL_SOURCES.get(scheme)) or ()):
        options["pretrained"] = False
    bb = load_model(meta["source"]["source"], **options).build(_example(pre))
    if meta.get("keep"):
        bb.truncate(meta["keep"])
    bb.preprocessing = pre
    bb.head = _head_from(meta)
    state = load_file(str(d / "model.safetensors"))
    missing, unexpected = bb.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{d}/model.safetensors does not fit the rebuilt architecture ({(missing or unexpected)[0]})",
                        "save the model again with the same transferlab version")
    bb.class_names = meta["class_names"]
    return bb.eval(), meta


def _example(pre: Preprocessing):
    if pre.kind == "text":
        return pre.apply(np.array(["an example sentence", "another"], dtype=object))
    return torch.zeros(2, *(pre.input_shape or (1,)))


@torch.no_grad()
def predict(model_dir: str | Path, data_spec: str, out_csv: str | Path, data_options: dict | None = None) -> Path:
    """Predict every example of ``data_spec`` and write a CSV: labelled data with its split and label; new inputs
    without labels (a flat image folder, a text file of one sentence per line, a table without its label column)
    with their path, text or row number."""
    from transferlab.sources import ModelSource, load_data

    from transferlab.data.unlabelled import read_unlabelled

    bb, meta = load_saved(model_dir)
    names, cut, options = meta["class_names"], meta.get("cut"), data_options or {}  # "cut": format 3 probes
    table = {"features": meta["features"], "categories": meta.get("categories", {})} if meta.get("features") else None
    new = read_unlabelled(data_spec, bb.preprocessing, table=table,
                          **{k: v for k, v in options.items() if k.endswith("_col") or k in ("x_key", "y_key")})
    if new is not None:  # inputs without labels: one row per input, named by its path, text or row number
        x, given = new
        _door(bb, x, cut, model_dir)
        probs = _probabilities(bb, Split(bb.preprocessing.apply(x), torch.zeros(len(given), dtype=torch.long)), cut)
        return _write(out_csv, ["input", "prediction", *[f"p_{n}" for n in names]],
                      [[g, names[int(p.argmax())], *[f"{v:.6f}" for v in p]] for g, p in zip(given, probs)])
    if table and table.get("categories") and _is_table(data_spec):  # its text columns encoded as when it trained
        options = {"categorical": sorted(table["categories"]), **options}
    data = load_data(data_spec, model=ModelSource(meta["source"], bb.preprocessing), **options)
    aligned = lambda x: _as_trained(x, table, data_spec, data.split_info.get("features"))  # noqa: E731
    _door(bb, aligned(data.train.inputs), cut, model_dir)
    rows = []
    for split_name, split in (("train", data.train), ("val", data.val), ("test", data.test.open("predict"))):
        probs = _probabilities(bb, Split(bb.preprocessing.apply(aligned(split.inputs)), split.y), cut)
        for i, p in enumerate(probs):
            rows.append([split_name, i, data.class_names[int(split.y[i])], names[int(p.argmax())], *[f"{v:.6f}" for v in p]])
    return _write(out_csv, ["split", "row", "label", "prediction", *[f"p_{n}" for n in names]], rows)


def _is_table(spec: str) -> bool:
    scheme, sep, rest = spec.partition(":")
    return scheme == "table" or Path(rest if sep else spec).suffix.lower() in (".csv", ".tsv", ".parquet", ".jsonl")


def _as_trained(x, table: dict | None, spec: str, have: list[str] | None):
    """A labelled table's rows (columns ``have``) in the columns the model was trained on, matched by name
    (``tables.align_columns``); other inputs, and models saved without their columns, as they are."""
    if table is None or have is None or not torch.is_tensor(x):
        return x
    from transferlab.data.tables import align_columns

    return align_columns(x, list(have), table["features"], table.get("categories", {}), spec)


def _door(bb: Backbone, inputs, cut: int | None, model_dir) -> None:
    """Two of the inputs through the saved model as ``predict`` runs it, before any prediction: a model and data
    that do not fit give one line (``sources.misfit``), not a traceback."""
    from transferlab.sources import misfit

    two = take(inputs, torch.arange(min(2, n_rows(inputs))))
    try:
        example = bb.preprocessing.apply(two)
        _probabilities(bb, Split(example, torch.zeros(n_rows(example), dtype=torch.long)), cut)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the saved network on the user's rows: any error means they do not fit
        raise misfit(f"the model saved in {model_dir}", two, exc) from exc


def _write(out_csv, header: list[str], rows: list[list]) -> Path:
    out = Path(out_csv)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return out


def _probabilities(bb: Backbone, split: Split, cut: int | None, batch: int = 256) -> np.ndarray:
    out = []
    n = len(split)
    for s in range(0, n, batch):
        x = take(split.inputs, torch.arange(s, min(s + batch, n)))
        if cut is None:
            logits = bb(x)
        else:
            feats = bb.features(x, cut)
            logits = bb.head(feats.reshape(len(feats), -1))
        out.append(torch.softmax(logits.float(), 1).numpy())
    return np.concatenate(out)
