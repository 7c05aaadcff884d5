"""Per-tensor random numbers: the same seed and tensor name give the same mask anywhere.

Random numbers for model ``index``'s tensor ``name`` come in fixed blocks of elements (counted
over the flattened tensor: ``BLOCK`` = 65,536 for :func:`uniform`, ``MASK_BLOCK`` = 2^20 for
:func:`keep_mask`); block j is drawn from a NumPy bit generator seeded by a
hash of ``(seed, name, index, j)``. So masks depend neither on the order tensors are processed in
nor on how a large tensor is split into row chunks, and a streamed merge equals an in-memory one
bit for bit.

* :func:`uniform` (DELLA): float U[0, 1) draws, block j from PCG64.
* :func:`keep_mask` (DARE, DARE-TIES): Bernoulli(d) masks from one random 32-bit integer per
  entry. For the entry at flat position i, U_i = 2^24 · H_i + L_i where H_i is byte
  i − 2^20·j of the little-endian byte stream of SFC64's raw 64-bit outputs (block j = i div
  2^20, seeded with ``block_seed(seed, name, index, j)``), and L_i the top 24 bits of ``splitmix64(K + (i + 1) · 0x9E3779B97F4A7C15)`` with
  K = ``block_seed(seed, name, index, -1)``. The entry is kept iff U_i < t, t = round(d · 2^32),
  so the keep probability is d to within 2^-33. U_i < t is decided from the byte alone except
  where H_i equals t's top byte (1 entry in 256; none when d is a multiple of 1/256, e.g. 0.5),
  so only those entries need L_i: one random byte per entry instead of one float, several
  times faster than :func:`uniform`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = [
    "BLOCK",
    "MASK_BLOCK",
    "block_seed",
    "keep_mask",
    "keep_threshold",
    "tensor_generator",
    "uniform",
]

BLOCK = 1 << 16
MASK_BLOCK = 1 << 20


def block_seed(seed: int, name: str, index: int, block: int = 0) -> int:
    """A 63-bit seed hashed from ``seed``, the tensor ``name``, the model ``index`` and ``block``."""
    text = f"{seed}\x00{name}\x00{index}\x00{block}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def tensor_generator(seed: int, name: str, index: int, block: int = 0) -> torch.Generator:
    """A torch CPU generator seeded with :func:`block_seed` (for callers that want torch draws)."""
    gen = torch.Generator()
    gen.manual_seed(block_seed(seed, name, index, block))
    return gen


def uniform(
    seed: int,
    name: str,
    index: int,
    shape: torch.Size | tuple[int, ...],
    offset: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """U[0, 1) draws for the flat elements ``offset .. offset + numel(shape)`` of a tensor.

    A block is drawn only up to the last element needed; the generator yields the same prefix
    for any draw length, so a chunk's draws equal the whole tensor's draws sliced (tested).
    """
    numel = torch.Size(shape).numel()
    end = offset + numel
    out = torch.empty(numel, dtype=dtype)
    pos = offset
    while pos < end:
        block = pos // BLOCK
        start = block * BLOCK
        length = min(BLOCK, end - start)
        rng = np.random.Generator(np.random.PCG64(block_seed(seed, name, index, block)))
        kind = np.float64 if dtype == torch.float64 else np.float32
        draws = torch.from_numpy(rng.random(length, dtype=kind)).to(dtype)
        take = min(start + length, end) - pos
        out[pos - offset : pos - offset + take] = draws[pos - start : pos - start + take]
        pos += take
    return out.reshape(shape)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """The splitmix64 output function on uint64 values (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def keep_threshold(density: float) -> int:
    """t = round(d · 2^32): an entry is kept iff its 32-bit draw is below t."""
    return min(max(round(density * 2.0**32), 0), 1 << 32)


def keep_mask(
    seed: int, name: str, index: int, numel: int, offset: int, density: float
) -> torch.Tensor:
    """Boolean keep mask (U_i < round(d · 2^32)) for flat positions ``offset .. offset + numel``.

    Equal to the whole tensor's mask sliced, for any ``offset`` (tested).
    """
    t = keep_threshold(density)
    top = t >> 24
    if top > 255:  # t = 2^32: every entry is kept
        return torch.ones(numel, dtype=torch.bool)
    key = np.uint64(block_seed(seed, name, index, -1))
    keep = np.empty(numel, dtype=bool)
    end, pos = offset + numel, offset
    while pos < end:
        block = pos // MASK_BLOCK
        start = block * MASK_BLOCK
        stop = min(start + MASK_BLOCK, end)
        raw = np.random.SFC64(block_seed(seed, name, index, block)).random_raw(
            -(-(stop - start) // 8)
        )
        high = raw.astype("<u8", copy=False).view(np.uint8)[pos - start : stop - start]
        np.less(high, top, out=keep[pos - offset : stop - offset])
        if not t & 0xFFFFFF:  # t = 2^24 · top: H_i < top decides (d a multiple of 1/256)
            pos = stop
            continue
        ties = np.flatnonzero(high == top)  # U_i < t is undecided from the byte: use L_i
        if ties.size:
            position = ties.astype(np.uint64) + np.uint64(pos + 1)
            low = _splitmix64(key + position * _GOLDEN) >> np.uint64(40)
            keep[ties + (pos - offset)] = low < np.uint64(t & 0xFFFFFF)
        pos = stop
    return torch.from_numpy(keep)
