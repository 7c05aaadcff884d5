"""Per-tensor random generators: the same seed and tensor name give the same mask anywhere.

The generator for model ``index``'s tensor ``name`` is seeded from a hash of
``(seed, name, index)``, so masks do not depend on the order tensors are processed in, and a
streamed merge equals an in-memory one bit for bit.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["tensor_generator"]


def tensor_generator(seed: int, name: str, index: int) -> torch.Generator:
    """A CPU generator seeded from ``seed``, the tensor ``name`` and the model ``index``."""
    digest = hashlib.blake2b(f"{seed}\x00{name}\x00{index}".encode(), digest_size=8).digest()
    gen = torch.Generator()
    gen.manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))
    return gen
