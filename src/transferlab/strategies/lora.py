"""LoRA (Hu et al. 2022) through Hugging Face ``peft``: low-rank adapters in the attention projections.

The pretrained weights stay frozen; each targeted Linear layer gains a trainable rank-``r`` update B·A
(B starts at zero, so training starts from the pretrained model), and the new head trains with it. After
training the update is merged into the weights, so the trained model has the pretrained model's structure
(what-moved, saving and prediction read it like any other). Needs ``pip install "transferlab[hf]"``.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from transferlab.backbones.base import Backbone
from transferlab.data.base import Split
from transferlab.strategies.base import Fitted, Strategy, TrialContext, register, train_backbone
from transferlab.training import param_groups


def _linear_names(module: nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, m in module.named_modules() if isinstance(m, nn.Linear)}


def target_modules(backbone: Backbone, wanted: tuple[str, ...] | None) -> list[str] | None:
    """The Linear layers to adapt: ``wanted``, or peft's default for the first model family whose names all
    occur in the body (BERT's query/value, DistilBERT's q_lin/v_lin, ...). None when none fits."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    present = _linear_names(backbone.blocks)
    if wanted:
        return list(wanted) if set(wanted) <= present else None
    for names in DEFAULTS.values():
        if set(names) <= present:
            return list(names)
    return None


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base layer and put the base layer back in its place (in place)."""
    from peft.tuners.lora import LoraLayer

    for name, m in list(module.named_modules()):
        if isinstance(m, LoraLayer):
            m.merge()
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, m.get_base_layer())
    return module


@register
@dataclass(frozen=True)
class LoRA(Strategy):
    name = "lora"
    summary = "low-rank adapters (rank r) in the attention projections via peft, plus a new head; the body frozen"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] | None = None  # Linear layer names; None: peft's default for the model family

    def applies(self, backbone: Backbone) -> str | None:
        import importlib.util

        if importlib.util.find_spec("peft") is None:
            return 'LoRA needs the peft library (pip install "transferlab[hf]")'
        if target_modules(backbone, self.targets) is None:
            return ("the model has no attention projections peft knows (LoRA applies to Hugging Face and "
                    "sentence-transformers encoders)" if not self.targets else f"the model has no Linear layers named {self.targets}")
        return None

    def reads_cut(self, backbone: Backbone) -> int | None:
        names = target_modules(backbone, self.targets) or []
        adapted = [i for i, b in enumerate(backbone.blocks.values()) if _linear_names(b) & set(names)]
        return adapted[0] if adapted and adapted[0] > 0 else None  # the blocks before the first adapted one: frozen

    def fit(self, ctx: TrialContext, candidate: dict) -> Fitted:
        from peft import LoraConfig, inject_adapter_in_model

        bb = ctx.fresh().replace_head(ctx.data.n_classes, class_names=ctx.data.class_names)
        names = target_modules(bb, self.targets)
        adapted = [i for i, b in enumerate(bb.blocks.values()) if _linear_names(b) & set(names)]
        bb.freeze_blocks(i for i in range(bb.n_blocks) if i not in adapted)
        inject_adapter_in_model(LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                                           target_modules=names), bb.blocks)
        for pname, p in bb.blocks.named_parameters():  # inside the adapted blocks only the adapters train
            p.requires_grad_("lora_" in pname)
        bb.to(ctx.device)
        fitted = train_backbone(ctx, bb, adapted[0], param_groups(list(bb.blocks.values()), bb.head, candidate["lr"]))
        score = fitted.evaluate

        def evaluate(split: Split, key: str = "test", correct_rows: list | None = None) -> tuple[float, float]:
            merge_lora(bb)  # the chosen candidate becomes a plain model before it is scored and kept (idempotent)
            return score(split, key, correct_rows)

        fitted.evaluate = evaluate
        return fitted
