"""Images held as bytes, not floats: memory that grows with the pixels stored, or not at all.

An ``Images`` object is a leaf of a split's inputs, like a tensor.  ``images[idx]`` is the float32 batch
the model reads ((B, C, H, W) in [0, 1], then the pretrained model's mean and std); ``select(idx)`` is the
rows ``idx`` as ``Images`` again, sharing the same storage (a split or a training subset copies nothing).
Two storages:

- ``DecodedImages``: one uint8 (N, C, H, W) tensor at the model's input size, 4x smaller than float32
  (20k images at 224 px: 3.0 GB instead of 12 GB).  Decoding is done once, by DataLoader worker processes.
- ``ImageFiles``: the file paths only; a batch is decoded when it is read.  Memory does not grow with the
  number of images; ``batches`` reads ahead with DataLoader workers so decoding overlaps the model's work.

``image_storage`` picks: in memory while the pixels fit ``MEMORY_LIMIT``, streamed beyond it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

MEMORY_LIMIT = 2 << 30  # bytes of uint8 pixels kept in memory by storage="auto"; more images stream from their files
STORAGES = ("auto", "memory", "stream")


def decode(path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image file as uint8 (C, H, W) at ``size``; raises OSError/ValueError when it cannot be read."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
        a = np.array(im, dtype=np.uint8)  # a writable copy, which torch can wrap
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


@dataclasses.dataclass(eq=False)
class Images:
    """Base of the two storages: row selection, the float conversion and the fingerprint."""

    index: np.ndarray | None = None  # rows of the storage, in order (None: all of them)
    norm: tuple | None = None  # (mean, std) per channel, applied after scaling to [0, 1]

    # ---- what a storage provides ------------------------------------------------------
    def _count(self) -> int:
        raise NotImplementedError

    def _rows(self, rows: np.ndarray) -> torch.Tensor:
        """uint8 (B, C, H, W) of storage rows ``rows``."""
        raise NotImplementedError

    def _digest(self, h, rows: np.ndarray) -> None:
        raise NotImplementedError

    streams = False  # whether reading decodes files (then ``batches`` reads ahead in worker processes)

    # ---- the tensor-like surface ----------------------------------------------------
    def _storage_rows(self, idx=None) -> np.ndarray:
        rows = np.arange(self._count()) if self.index is None else self.index
        if idx is None:
            return rows
        if torch.is_tensor(idx):
            idx = idx.cpu().numpy()
        return np.atleast_1d(rows[idx])

    def __len__(self) -> int:
        return self._count() if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.example_shape)

    def dim(self) -> int:
        return 4

    ndim = property(dim)

    def raw(self, idx) -> torch.Tensor:
        """uint8 pixels of rows ``idx`` (B, C, H, W)."""
        return self._rows(self._storage_rows(idx))

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)):  # one image, without the batch axis, as a tensor would give
            return self[[idx]][0]
        return self.to_float(self.raw(idx))

    def to_float(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels as the model reads them (on whatever device they are)."""
        x = pixels.float().div_(255)
        if self.norm is not None:
            mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) for v in self.norm)
            x = x.sub_(mean).div_(std)
        return x

    def select(self, idx) -> Images:
        """Rows ``idx`` as Images on the same storage (no copy)."""
        return dataclasses.replace(self, index=self._storage_rows(idx))

    def joined(self, others: list[Images]) -> Images:
        """These rows, then those of ``others``, as one Images on the same storage (no copy).  ValueError when
        another is on another storage (or normalised otherwise): their rows cannot share one index."""
        for o in others:
            for f in dataclasses.fields(self):
                a, b = getattr(self, f.name), getattr(o, f.name)
                if f.name != "index" and type(o) is type(self) and (a is b or (isinstance(a, tuple) and a == b)):
                    continue
                if f.name != "index":
                    raise ValueError(f"images on different storages ({f.name} differs)")
        rows = np.concatenate([self._storage_rows(), *(o._storage_rows() for o in others)])
        return dataclasses.replace(self, index=rows)

    def normalized(self, mean, std) -> Images:
        return dataclasses.replace(self, norm=(tuple(mean), tuple(std)))

    def to(self, device, non_blocking: bool = False) -> torch.Tensor:
        return self[:].to(device, non_blocking=non_blocking)

    def digest(self) -> str:
        """A hash of what the model would read: the pixels (or files) of these rows and the normalisation."""
        h = hashlib.sha256(repr((self.shape, self.norm)).encode())
        self._digest(h, self._storage_rows())
        return h.hexdigest()


@dataclasses.dataclass(eq=False)
class DecodedImages(Images):
    pixels: torch.Tensor = None  # uint8 (N, C, H, W)

    def _count(self) -> int:
        return len(self.pixels)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape[1:])

    def _rows(self, rows: np.ndarray) -> torch.Tensor:
        return self.pixels[torch.from_numpy(rows)]

    def _digest(self, h, rows: np.ndarray) -> None:
        for s in range(0, len(rows), 1024):  # in chunks: never a second copy of all the pixels
            h.update(self._rows(rows[s:s + 1024]).numpy().tobytes())


@dataclasses.dataclass(eq=False)
class ImageFiles(Images):
    paths: tuple = ()
    size: tuple[int, int] = (224, 224)
    channels: int = 3
    streams = True

    def _count(self) -> int:
        return len(self.paths)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return (self.channels, *self.size)

    def _rows(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([decode(self.paths[i], self.size, self.channels) for i in rows]))

    def _digest(self, h, rows: np.ndarray) -> None:
        h.update(repr((self.size, self.channels)).encode())
        for i in rows:  # the file's name, size and modification time: rewriting a file changes the study's data key
            st = os.stat(self.paths[i])
            h.update(f"{self.paths[i]}|{st.st_size}|{st.st_mtime_ns}".encode())


def _as_is(batch):
    return batch


# ---- reading files ----------------------------------------------------------------------
class _Decoder(torch.utils.data.Dataset):
    """Dataset over files for a DataLoader: a chunk of paths -> (uint8 array per readable file, bad positions)."""

    def __init__(self, paths, chunks, size, channels):
        self.paths, self.chunks, self.size, self.channels = paths, chunks, size, channels

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i):
        from PIL import UnidentifiedImageError

        good, bad = [], []
        for j in self.chunks[i]:
            try:
                good.append((j, decode(self.paths[j], self.size, self.channels)))
            except (UnidentifiedImageError, OSError, ValueError):
                bad.append(j)
        return good, bad


def loader_workers() -> int:
    """Decoding processes: the usable cores, at most 8 (each runs one torch thread)."""
    from transferlab.threads import usable_cores

    return min(8, usable_cores()) if usable_cores() > 1 else 0


def decode_all(paths: list[Path], size: tuple[int, int], channels: int, chunk: int = 64) -> tuple[torch.Tensor, list[int]]:
    """Every file decoded into one preallocated uint8 (N, C, H, W) tensor (rows of unreadable files stay
    zero) and the positions of those files.  Decoded in parallel by DataLoader worker processes."""
    out = torch.empty((len(paths), channels, *size), dtype=torch.uint8)
    chunks = [range(s, min(s + chunk, len(paths))) for s in range(0, len(paths), chunk)]
    workers = loader_workers() if len(chunks) > 1 else 0
    loader = torch.utils.data.DataLoader(_Decoder([str(p) for p in paths], chunks, size, channels), batch_size=None,
                                         num_workers=workers, collate_fn=_as_is)
    bad: list[int] = []
    for good, failed in loader:
        for j, a in good:
            out[j] = torch.from_numpy(a)
        bad += failed
    return out, bad


def unreadable(paths: list[Path]) -> list[int]:
    """Positions of the files that cannot be read: each is opened and verified, not decoded."""
    from PIL import Image, UnidentifiedImageError

    bad = []
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, ValueError):
            bad.append(i)
    return bad


def image_storage(storage: str, n: int, size: tuple[int, int], channels: int) -> str:
    """``auto``: memory while the uint8 pixels fit ``MEMORY_LIMIT``, else stream."""
    if storage != "auto":
        return storage
    return "memory" if n * channels * size[0] * size[1] <= MEMORY_LIMIT else "stream"


# ---- batches, read ahead ------------------------------------------------------------------
class _Batches(torch.utils.data.Dataset):
    def __init__(self, inputs, chunks):
        self.inputs, self.chunks = inputs, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i):
        from transferlab.data.base import tree_map

        # Images leave the worker as uint8, a quarter of the float32 batch: the batches waiting in shared memory
        # are what a streamed folder's memory is made of.
        return tree_map(lambda v: v.raw(self.chunks[i]) if isinstance(v, Images) else v[self.chunks[i]], self.inputs)


def _as_float(inputs, batch):
    """A worker's batch as the model reads it: its uint8 images scaled and normalised here."""
    if isinstance(inputs, dict):
        return {k: _as_float(inputs[k], batch[k]) for k in inputs}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_as_float(a, b) for a, b in zip(inputs, batch))
    return inputs.to_float(batch) if isinstance(inputs, Images) else batch


def batches(inputs, chunks: list):
    """``take(inputs, c)`` for each chunk ``c`` of row indices, in order.  Inputs read from files are decoded
    ahead by DataLoader worker processes (each with one thread), so the model does not wait for the disk."""
    from transferlab.data.base import leaves, take

    workers = loader_workers() if any(getattr(v, "streams", False) for v in leaves(inputs)) else 0
    if workers == 0 or len(chunks) < 2:
        for c in chunks:
            yield take(inputs, c)
        return
    loader = torch.utils.data.DataLoader(_Batches(inputs, chunks), batch_size=None, num_workers=workers,
                                         prefetch_factor=2, collate_fn=_as_is)
    for batch in loader:
        yield _as_float(inputs, batch)


def in_order(inputs, batch_size: int):
    """``(rows, batch)`` over all of ``inputs`` in order, ``batch_size`` rows at a time, read ahead as ``batches``
    does (evaluation and prefix passes)."""
    from transferlab.data.base import n_rows

    chunks = list(torch.arange(n_rows(inputs)).split(batch_size))
    return zip(chunks, batches(inputs, chunks))
