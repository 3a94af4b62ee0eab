"""Each training run's own randomness, so a seed's record does not depend on what trained beside it.

A trial's record must be the same whether its run trained alone, one after another with its learning-rate
candidates (successive halving interleaves them), or batched with other seeds (``members.Cohort``).  Two things
draw random numbers while a run trains, besides its data stream (already its own ``torch.Generator``):

- **Dropout layers** (``nn.Dropout``): replaced, in the run's own model, by ``KeyedDropout``, whose mask is a
  hash of (the run's key, the layer, the layer's call count, the element) rather than a draw from torch's global
  generator.  That is a pure function, so it gives the same masks alone and under ``torch.func.vmap``, where
  each member's key and count are its own slice of the stacked buffers.
- **Anything else** (stochastic depth, a functional attention dropout): a run trained on its own swaps torch's
  global generator for its own state during each of its periods (``own_rng``), so interleaved runs do not share
  one stream.  A batched cohort calls vmap with ``randomness="error"``: a network that draws such numbers cannot
  be batched (its draws would come from one shared stream) and trains one member at a time, saying why.

The run's seed comes from (trial seed, candidate), ``member_seed``: the same wherever and whenever it trains.
"""
from __future__ import annotations

import contextlib
import hashlib
import json

import torch
from torch import nn

_M32 = 0xFFFFFFFF
_MUL = 0x45D9F3B  # a 32-bit integer hash's multiplier (under 2^27: products of 32-bit values stay inside int64)
_GOLD = 0x61C88647  # 2^32 / golden ratio, under 2^31: spreads consecutive integers


def member_seed(seed: int, candidate: dict | None = None) -> int:
    """A run's own seed from its trial's seed and its candidate (e.g. ``{"lr": 0.003}``); stable across runs."""
    text = json.dumps([int(seed), candidate or {}], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (values in [0, 2^32) held in int64), elementwise."""
    x = x ^ (x >> 16)
    x = (x * _MUL) & _M32
    x = x ^ (x >> 16)
    x = (x * _MUL) & _M32
    return x ^ (x >> 16)


def uniform(key: torch.Tensor, site: int, count: torch.Tensor, shape, device) -> torch.Tensor:
    """Uniform numbers in [0, 1) (24 bits), a pure function of (key, site, count) and each element's coordinates.

    Coordinates, not a flat index: an element's number does not depend on the sizes of the dimensions, so a text
    batch trimmed to its own longest row (alone) or to the cohort's (batched) draws the same mask for each token."""
    h = _mix((_mix((count & _M32) * _GOLD & _M32) ^ (key & _M32) ^ (site * _GOLD & _M32)) & _M32)
    dims = len(shape)
    for d, n in enumerate(shape):
        coord = torch.arange(int(n), device=device, dtype=torch.int64).view([int(n) if i == d else 1 for i in range(dims)])
        h = _mix(h ^ (_mix((coord + d * _GOLD) & _M32)))
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


class KeyedDropout(nn.Dropout):
    """``nn.Dropout`` whose masks come from the run's key (see the module's docstring): in eval mode, or at p = 0,
    the identity, as ``nn.Dropout``.  Its key and call count are buffers left out of the state dict, so a saved
    model, a checkpoint and a restored best state are those of ``nn.Dropout``."""

    def __init__(self, p: float, key: int, site: int):
        super().__init__(p)
        self.site = site
        self.register_buffer("key", torch.tensor(key, dtype=torch.int64), persistent=False)
        self.register_buffer("count", torch.zeros((), dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p >= 1:
            return torch.zeros_like(x)
        keep = uniform(self.key, self.site, self.count, x.shape, x.device) >= self.p
        self.count.add_(1)
        return torch.where(keep, x, 0.0) * (1.0 / (1.0 - self.p))  # backward keeps the bool mask, not a float one


def key_dropout(model: nn.Module, seed: int) -> None:
    """Replace each ``nn.Dropout`` in ``model`` by a ``KeyedDropout`` keyed by ``seed`` (one site per layer, in
    module order, after any already keyed); a layer already keyed keeps its site, takes the new key and starts
    counting afresh.  So a network keyed whole, then trained as its suffix on cached features, draws the same masks
    in the same layers as when trained whole (``strategies.base.train_backbone``)."""
    site = max((m.site for m in model.modules() if isinstance(m, KeyedDropout)), default=-1) + 1
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                parent._modules[name] = KeyedDropout(child.p, seed, site).to(_device(model))
                site += 1
            elif isinstance(child, KeyedDropout):
                child.key.fill_(seed)
                child.count.zero_()


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


class OwnRng:
    """A run's own state of torch's global generators (CPU, and the run's GPU), seeded at its first use."""

    def __init__(self, seed: int, device):
        self.seed, self.device = seed, torch.device(device)
        self.state: tuple | None = None

    @contextlib.contextmanager
    def active(self):
        """Within: torch's global generators hold this run's state; after, theirs again and this run's kept."""
        gpu = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=gpu, device_type="cuda" if gpu else None):
            if self.state is None:  # this run's generators only (torch.manual_seed would reseed every GPU)
                torch.default_generator.manual_seed(self.seed)
                if gpu:
                    with torch.cuda.device(self.device):
                        torch.cuda.manual_seed(self.seed)
            else:
                torch.set_rng_state(self.state[0])
                if gpu:
                    torch.cuda.set_rng_state(self.state[1], self.device)
            try:
                yield
            finally:
                self.state = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if gpu else None)
