"""Bit-packing of boolean masks into uint8 tensors (8 mask entries per byte), safetensors-ready.

The packing is ``numpy.packbits`` of the row-major flattened mask (big-endian bit order: the first
entry is the most significant bit of the first byte); the last byte is zero-padded. Unpacking needs
the original shape, which the caller keeps (e.g. from the base checkpoint).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError


def pack_mask(mask: Tensor) -> Tensor:
    """Pack a boolean tensor of any shape into a 1-D uint8 tensor of ``ceil(numel / 8)`` bytes."""
    bits = mask.detach().to("cpu", torch.bool).flatten().numpy()
    return torch.from_numpy(np.packbits(bits))


def unpack_mask(packed: Tensor, shape: tuple[int, ...] | torch.Size, name: str = "mask") -> Tensor:
    """Inverse of :func:`pack_mask`: a boolean tensor of ``shape``."""
    numel = math.prod(shape)
    expected = (numel + 7) // 8
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != expected:
        raise PolytaskError(
            f"packed mask '{name}' must be a 1-D uint8 tensor of {expected} bytes for shape "
            f"{tuple(shape)}, got {packed.dtype} of shape {tuple(packed.shape)}"
        )
    bits = np.unpackbits(packed.cpu().numpy(), count=numel).astype(bool)
    return torch.from_numpy(bits).reshape(tuple(shape))


def packed_nbytes(shape: tuple[int, ...] | torch.Size) -> int:
    """Bytes one packed mask of ``shape`` takes."""
    return (math.prod(shape) + 7) // 8
