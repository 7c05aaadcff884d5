"""Per-tensor random numbers: the same seed and tensor name give the same mask anywhere.

Uniform draws for model ``index``'s tensor ``name`` come in fixed blocks of 65,536 elements
(counted over the flattened tensor); block j is drawn from NumPy's PCG64 generator seeded by a
hash of ``(seed, name, index, j)`` (several times faster than torch's CPU generator). So masks depend neither on the order tensors are processed in nor on
how a large tensor is split into row chunks, and a streamed merge equals an in-memory one bit
for bit.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["BLOCK", "block_seed", "tensor_generator", "uniform"]

BLOCK = 1 << 16


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
