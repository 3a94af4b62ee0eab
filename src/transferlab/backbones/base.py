"""The Backbone contract: a model seen as ordered blocks, a head and cut points.

Cut point ``k`` is the state after the first ``k`` blocks (``k = 0`` is the
preprocessed input, ``k = n_blocks`` the pooled features the head reads).
Everything a strategy needs is here: replace the head, re-initialise, freeze
the first k blocks, and run the network from any cut.  The contract is checked
when the object is built, on an example batch, so a model that does not fit it
fails at once with a message instead of in the middle of a study.
"""
from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from transferlab.errors import UserError

State = Any  # a tensor, or a tuple/dict of tensors for models that carry masks

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


@dataclass(frozen=True)
class Preprocessing:
    """How raw inputs become what the pretrained model expects.

    ``mean``/``std`` broadcast over the channel axis (axis 1) of a batch.
    ``input_shape`` is the shape of one example, without the batch axis.
    """

    kind: str = "vector"  # vector | image | text
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    extra: dict = field(default_factory=dict)

    def apply(self, x):
        if self.kind == "text" and not torch.is_tensor(x) and not isinstance(x, dict):
            return tokenize(x, self.extra["tokenizer"], self.extra.get("max_length", 128))
        from transferlab.data.imagestore import Images

        if isinstance(x, Images):  # bytes stay bytes: the mean and std are applied to each batch read
            return x.normalized(self.mean, self.std) if self.mean is not None else x
        if self.mean is None or not torch.is_tensor(x) or not x.is_floating_point():
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, dtype=x.dtype).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype).view(shape)
        return (x - mean) / std

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        d = dict(d)
        for key in ("mean", "std", "input_shape"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def tokenize(texts, tokenizer: str, max_length: int) -> dict[str, torch.Tensor]:
    """Token ids and masks, padded to the longest text of this split (so its batches share a length)."""
    enc = _tokenizer(tokenizer)([str(t) for t in texts], padding="longest", truncation=True, max_length=max_length,
                                return_tensors="pt")
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def make_head(in_dim: int, n_classes: int, depth: int = 1, hidden: int = 256, dropout: float = 0.0) -> nn.Module:
    """A new classifier: ``depth`` Linear layers, ReLU (and dropout) between them."""
    if depth < 1:
        raise UserError(f"head depth must be at least 1, got {depth}", "use depth=1 for a linear head")
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth - 1):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


class Standardize(nn.Module):
    """(x - mean) / std per feature, with statistics fixed from the training rows (a head on frozen features
    sees what scikit-learn's StandardScaler gives the linear probe). Buffers, so they save with the head."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @classmethod
    def fitted(cls, features: torch.Tensor) -> Standardize:
        x = features.reshape(len(features), -1).float()
        m = cls(x.shape[1])
        m.mean.copy_(x.mean(0))
        std = x.std(0, unbiased=False)
        m.std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))  # a constant feature is left as it is
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(len(x), -1) - self.mean) / self.std


def pool_state(state: State) -> torch.Tensor:
    """A cut's activations as (batch, channels): feature maps (batch, channels, *space) averaged over space, token
    states over their tokens ((hidden, mask) over the real ones; a (batch, tokens, features) tensor, as timm's
    ViT and Mixer blocks give, over all), a (batch, features) tensor as it is. The one pooling every per-cut reader
    uses (probes, heads at a cut, truncated networks, the profile), so a cached cut pooled equals the truncated
    network's own output. (A channels-last map, as Swin's stages give, would be averaged over the wrong axes.)"""
    if isinstance(state, (tuple, list)):  # (hidden, mask): mean over real tokens
        hidden, mask = state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * m).sum(1) / m.sum(1).clamp(min=1)).float()
    if state.dim() == 3:
        return state.float().mean(dim=1)
    if state.dim() > 3:
        return state.float().mean(dim=tuple(range(2, state.dim())))
    return state


class Pool(nn.Module):
    """``pool_state`` as a parameter-free block: what a truncated network puts after its last kept block."""

    def forward(self, state: State) -> torch.Tensor:
        return pool_state(state)


class _Suffix(nn.Module):
    """Blocks ``k..n`` and the head, sharing the backbone's own modules."""

    def __init__(self, backbone: Backbone, k: int):
        super().__init__()
        self.k = k
        self.blocks = nn.ModuleList(list(backbone.blocks.values())[k:])
        self.head = backbone.head
        object.__setattr__(self, "_modes", backbone)  # a plain reference, not a submodule: its frozen blocks stay in eval

    def train(self, mode: bool = True) -> _Suffix:
        super().train(mode)
        if mode:  # a frozen block after the cut (surgical fine-tuning) stays in eval mode, as in the Backbone
            self._modes.train(True)
        return self

    def forward(self, state: State) -> torch.Tensor:
        for block in self.blocks:
            state = block(state)
        return self.head(state)


class Backbone(nn.Module):
    """Ordered ``blocks``, a ``head``, and the operations every strategy uses.

    Parameters
    ----------
    blocks: ``(name, module)`` pairs in forward order; each takes the previous
        block's output.  The last block must output ``(batch, features)``.
    head: the classifier that reads the last block's output.
    example_input: one small batch, used to check the contract now.
    preprocessing: what the pretrained weights expect of their inputs.
    class_names: the source classes the current head predicts, if known.
    spec: how to rebuild this architecture (kept in results and saved models).
    """

    def __init__(
        self,
        blocks: Sequence[tuple[str, nn.Module]],
        head: nn.Module,
        example_input: State,
        preprocessing: Preprocessing | None = None,
        class_names: Sequence[str] | None = None,
        spec: dict | None = None,
    ):
        super().__init__()
        blocks = list(blocks)
        if not blocks:
            raise UserError("the model has no blocks", "give at least one (name, module) block before the head")
        names = [n for n, _ in blocks]
        if len(set(names)) != len(names):
            raise UserError(f"block names repeat: {names}", "give each block a unique name")
        self.blocks = nn.ModuleDict(blocks)
        self.head = head
        self.preprocessing = preprocessing or Preprocessing()
        self.class_names = list(class_names) if class_names is not None else None
        self.spec = dict(spec or {})
        self.frozen_k = 0
        self.frozen: frozenset[int] = frozenset()
        self.train_bn = False
        self.constructor: Callable[[], nn.Module] | None = None  # see set_constructor
        self._constructor_keys: dict[str, str] = {}
        self.init = "reset_parameters() of each module"
        self.feature_shapes, self.pooled_dims = self._check(example_input)
        self.feature_dim = self.feature_shapes[-1][-1]
        self.kept_from: int | None = None  # set by truncate: how many blocks of the source network are kept
        # Of the whole network, kept through truncation and cloning: it decides the memory layout of every part
        # trained or cached (accel.channels_last), so that a cached prefix equals the uncached one.
        from transferlab.accel import grouped_convs

        self.has_grouped_convs = grouped_convs(self)

    # ---- structure -------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def block_names(self) -> list[str]:
        return list(self.blocks.keys())

    def norm_blocks(self) -> list[int]:
        """Indices of the blocks that hold BatchNorm layers."""
        return [i for i, b in enumerate(self.blocks.values()) if any(isinstance(m, _NORM_TYPES) for m in b.modules())]

    @property
    def cut_points(self) -> list[str]:
        """Name of each cut ``k``: 'input', then the block it follows."""
        return ["input"] + self.block_names

    def _check(self, example_input: State) -> tuple[list[tuple[int, ...]], list[int]]:
        """Run the example batch through every block; record each cut's shape and its pooled width."""
        shapes, dims = [], []
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                state = example_input
                shapes.append(_shape(state))
                for name, block in self.blocks.items():
                    try:
                        state = block(state)
                    except Exception as exc:  # the user's module, any error
                        raise UserError(
                            f"block '{name}' fails on the output of the block before it ({type(exc).__name__}: {exc})",
                            "check the block order, or name the blocks explicitly",
                        ) from exc
                    shapes.append(_shape(state))
                    try:
                        dims.append(int(pool_state(state).shape[-1]))
                    except Exception:  # noqa: BLE001  a state no pooling reads (a dict): no probe or cut there
                        dims.append(0)
                if not torch.is_tensor(state) or state.dim() != 2:
                    raise UserError(
                        f"the last block outputs shape {_shape(state)}, not (batch, features)",
                        "end the last block with pooling and flatten, as the head expects",
                    )
                out = self.head(state)
        finally:
            self.train(was_training)
        if not torch.is_tensor(out) or out.dim() != 2:
            raise UserError(f"the head outputs shape {_shape(out)}, not (batch, classes)", "name the classifier module as the head")
        self._check_reinit_covered()
        return shapes, dims

    def _check_reinit_covered(self) -> None:
        for mod_name, module in self.named_modules():
            own = [n for n, p in module.named_parameters(recurse=False)]
            if own and not hasattr(module, "reset_parameters"):
                raise UserError(
                    f"module '{mod_name}' ({type(module).__name__}) has parameters but no reset_parameters(), so the scratch control cannot re-initialise it",
                    "give it a reset_parameters() method that draws fresh weights",
                )

    # ---- forward passes --------------------------------------------------
    def forward_from(self, state: State, k: int) -> torch.Tensor:
        for block in list(self.blocks.values())[k:]:
            state = block(state)
        return self.head(state)

    def forward(self, x: State) -> torch.Tensor:
        return self.forward_from(x, 0)

    def features(self, x: State, k: int) -> State:
        """The state at cut ``k`` (after the first ``k`` blocks)."""
        self._check_k(k)
        for block in list(self.blocks.values())[:k]:
            x = block(x)
        return x

    def suffix(self, k: int) -> nn.Module:
        """Blocks ``k..n`` plus the head, as a module sharing these weights."""
        self._check_k(k)
        return _Suffix(self, k)

    # ---- the operations strategies use ------------------------------------
    def replace_head(self, n_classes: int, depth: int = 1, hidden: int = 256, dropout: float = 0.0,
                     class_names: Sequence[str] | None = None) -> Backbone:
        self.head = make_head(self.feature_dim, n_classes, depth, hidden, dropout)
        self.class_names = list(class_names) if class_names is not None else None
        return self

    def truncate(self, n: int) -> Backbone:
        """Keep the first ``n`` blocks and remove the rest: a smaller network whose last block pools cut ``n``
        (``pool_state``) and whose new head (one Linear, as many outputs as before) reads it.

        The kept blocks are these very modules, so cut ``n`` of the truncated network is cut ``n`` of this one,
        and a cache of this network's cut ``n`` serves it exactly. ``n = n_blocks`` keeps everything.
        """
        self._check_k(n)
        if n == 0:
            raise UserError("a truncated network keeps at least one block (n=0 keeps none)",
                            f"choose n between 1 and {self.n_blocks}")
        if not self.pooled_dims[n - 1]:
            raise UserError(f"cut {n} ({self.block_names[n - 1]}) holds no activations a pool can read",
                            "truncate at a cut whose output is a tensor or (hidden, mask)")
        if self.kept_from is not None:
            raise ValueError("truncate a network once: it already keeps blocks 1..%d" % self.kept_from)
        if n == self.n_blocks:
            return self  # nothing removed: the same network, head included
        with torch.no_grad():
            device = next(iter(self.head.parameters()), torch.zeros(())).device
            out_dim = int(self.head(torch.zeros(1, self.feature_dim, device=device)).shape[-1])
        items = list(self.blocks.items())[:n]
        shapes, dims = self.feature_shapes[: n + 1], self.pooled_dims[:n]
        if len(shapes[-1]) != 2:
            name = "pool" if "pool" not in dict(items) else "pool_"
            items.append((name, Pool()))
            shapes, dims = [*shapes, (shapes[-1][0], dims[-1])], [*dims, dims[-1]]
        self.blocks = nn.ModuleDict(items)
        self.feature_shapes, self.pooled_dims = shapes, dims
        self.feature_dim = dims[-1]
        self.kept_from = n
        with torch.random.fork_rng(devices=[]):  # a placeholder the caller replaces: the RNG stays where it was
            self.head = make_head(self.feature_dim, out_dim)
        self.freeze_blocks([i for i in self.frozen if i < self.n_blocks], self.train_bn)
        self.constructor = None  # a fresh full network no longer maps onto these blocks
        return self

    def set_constructor(self, make: Callable[[], nn.Module], module: nn.Module, describe: str) -> Backbone:
        """Let ``reinit`` draw the blocks as the architecture's own constructor does.

        ``make()`` builds a fresh, randomly initialised copy of ``module`` (the module these blocks were cut
        from), so an initialisation written in its ``__init__`` (He init, zero-init of residual branches)
        is the one scratch gets.  ``make`` must be picklable (worker processes receive the backbone).
        """
        ids = {id(t): k for k, t in module.state_dict(keep_vars=True).items()}
        keys = {k: ids.get(id(t)) for k, t in self.blocks.state_dict(keep_vars=True).items()}
        if any(v is None for v in keys.values()):
            return self  # blocks that are not the module's own tensors: keep reset_parameters()
        self.constructor, self._constructor_keys, self.init = make, keys, f"by its constructor, {describe}"
        return self

    def reinit(self, from_block: int = 0) -> Backbone:
        """Draw parameters afresh: blocks ``from_block..n`` and the head.

        With a constructor (``set_constructor``) the blocks take the values of a freshly constructed model;
        otherwise each module's ``reset_parameters()`` draws them (BatchNorm's also resets its statistics).
        ``from_block=0`` is the scratch control; a larger value keeps a pretrained prefix (Yosinski's splice).
        """
        self._check_k(from_block)
        later = list(self.blocks.keys())[from_block:]
        if self.constructor is not None:
            fresh = self.constructor().state_dict()
            own = self.blocks.state_dict()
            update = {k: fresh[m] for k, m in self._constructor_keys.items() if k.split(".", 1)[0] in later}
            self.blocks.load_state_dict({**own, **update})
            modules = [self.head]
        else:
            modules = [*list(self.blocks.values())[from_block:], self.head]
        for block in modules:
            for module in block.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        return self

    def freeze(self, k: int, train_bn: bool = False) -> Backbone:
        """Freeze the first ``k`` blocks; their BatchNorm stays in eval mode unless ``train_bn``."""
        self._check_k(k)
        return self.freeze_blocks(range(k), train_bn)

    def freeze_blocks(self, frozen, train_bn: bool = False) -> Backbone:
        """Freeze the blocks at the indices ``frozen`` (any set, e.g. all but one for surgical fine-tuning).

        Frozen blocks stay in eval mode; their BatchNorm too unless ``train_bn``. The leading run of frozen
        blocks is ``frozen_k``: what a cache may hold (see ``fixed_prefix``).
        """
        frozen = frozenset(int(i) for i in frozen)
        for i in frozen:
            if not 0 <= i < self.n_blocks:
                raise UserError(f"block {i} is outside this model's blocks 0..{self.n_blocks - 1}",
                                f"choose blocks between 0 and {self.n_blocks - 1}")
        self.frozen, self.train_bn = frozen, train_bn
        self.frozen_k = next((i for i in range(self.n_blocks) if i not in frozen), self.n_blocks)
        for i, block in enumerate(self.blocks.values()):
            for module in block.modules():
                trainable = i not in frozen or (train_bn and isinstance(module, _NORM_TYPES))
                for p in module.parameters(recurse=False):
                    p.requires_grad_(trainable)
        self.train(self.training)
        return self

    @property
    def fixed_prefix(self) -> int:
        """How many leading blocks compute the same function throughout training (what a cache may hold).

        Frozen blocks do, unless their BatchNorm adapts (``train_bn``): then none is fixed.
        """
        return 0 if self.train_bn else self.frozen_k

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if mode:  # frozen blocks never leave eval mode (dropout off, BN statistics kept)
            for i, block in enumerate(self.blocks.values()):
                if i not in self.frozen:
                    continue
                block.eval()
                if self.train_bn:
                    for m in block.modules():
                        if isinstance(m, _NORM_TYPES):
                            m.train()
        return self

    def _check_k(self, k: int) -> None:
        if not 0 <= k <= self.n_blocks:
            raise UserError(
                f"cut k={k} is outside this model's 0..{self.n_blocks} blocks ({', '.join(self.block_names)})",
                f"choose k between 0 and {self.n_blocks}",
            )

    # ---- identity --------------------------------------------------------
    def fingerprint(self) -> str:
        """Hash of weights, buffers, structure and preprocessing: the cache key."""
        h = hashlib.sha256()
        h.update(repr(self.block_names).encode())
        h.update(repr(self.preprocessing.to_dict()).encode())
        for name, t in self.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    def clone(self) -> Backbone:
        return copy.deepcopy(self)

    def describe(self) -> dict:
        return {
            "blocks": self.block_names,
            "cut_points": self.cut_points,
            "feature_shapes": [list(s) for s in self.feature_shapes],
            "feature_dim": self.feature_dim,
            "params": sum(p.numel() for p in self.parameters()),
            "block_params": [sum(p.numel() for p in b.parameters()) for b in self.blocks.values()],
            "pooled_dims": self.pooled_dims,
            "class_names": self.class_names,
            "preprocessing": self.preprocessing.to_dict(),
            "spec": self.spec,
            "init": self.init,
        }


def count_trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _shape(state: State) -> tuple[int, ...]:
    """The shape of a state's first array (hidden states of a (hidden, mask) pair, token ids of a dict)."""
    from transferlab.data.base import leaves

    first = leaves(state)[0] if isinstance(state, (dict, tuple, list)) and len(state) else state
    return tuple(first.shape) if torch.is_tensor(first) else ()


def from_sequential(model: nn.Sequential, example_input: State, **kwargs) -> Backbone:
    """Group a Sequential's children into blocks; the last Linear is the head.

    A block starts at each child with parameters; parameter-free children
    (activations, pooling, flatten) and norm layers join the block before them.
    """
    children = list(model.named_children())
    head_at = max((i for i, (_, m) in enumerate(children) if isinstance(m, nn.Linear)), default=None)
    if head_at is None:
        raise UserError("the Sequential has no Linear layer to use as the head", "end the model with an nn.Linear classifier")
    groups: list[list[tuple[str, nn.Module]]] = [[]]
    has_weights = False  # does the current group hold a parametric layer yet?
    for name, module in children[:head_at]:
        weighted = any(True for _ in module.parameters()) and not isinstance(module, (*_NORM_TYPES, nn.LayerNorm))
        if weighted and has_weights:
            groups.append([])
        has_weights = has_weights or weighted
        groups[-1].append((name, module))
    groups = [g for g in groups if g]
    blocks = [(f"block{i}", nn.Sequential(*[m for _, m in g])) for i, g in enumerate(groups)]
    tail = [m for _, m in children[head_at:]]
    head = tail[0] if len(tail) == 1 else nn.Sequential(*tail)
    return Backbone(blocks, head, example_input, **kwargs)

