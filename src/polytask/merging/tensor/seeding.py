"""Per-tensor random numbers: the same seed and tensor name give the same mask anywhere.

Uniform draws for model ``index``'s tensor ``name`` come in fixed blocks of 65,536 elements
(counted over the flattened tensor); block j is drawn from a generator seeded by a hash of
``(seed, name, index, j)``. So masks depend neither on the order tensors are processed in nor on
how a large tensor is split into row chunks, and a streamed merge equals an in-memory one bit
for bit.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["BLOCK", "tensor_generator", "uniform"]

BLOCK = 1 << 16


def tensor_generator(seed: int, name: str, index: int, block: int = 0) -> torch.Generator:
    """A CPU generator seeded from ``seed``, the tensor ``name``, the model ``index`` and ``block``."""
    digest = hashlib.blake2b(
        f"{seed}\x00{name}\x00{index}\x00{block}".encode(), digest_size=8
    ).digest()
    gen = torch.Generator()
    gen.manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
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

    A block is drawn only up to the last element needed; torch's CPU generator yields the same
    prefix for any draw length, so a chunk's draws equal the whole tensor's draws sliced.
    """
    numel = torch.Size(shape).numel()
    end = offset + numel
    out = torch.empty(numel, dtype=dtype)
    pos = offset
    while pos < end:
        block = pos // BLOCK
        start = block * BLOCK
        length = min(BLOCK, end - start)
        draws = torch.rand(
            length, generator=tensor_generator(seed, name, index, block), dtype=dtype
        )
        take = min(start + length, end) - pos
        out[pos - offset : pos - offset + take] = draws[pos - start : pos - start + take]
        pos += take
    return out.reshape(shape)
