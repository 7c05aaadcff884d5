"""Bit flip: each bit of a {0, 1} fingerprint is flipped independently with probability ``p``.

``x'_{ij} = x_{ij} ⊕ f_{ij} = |x_{ij} − f_{ij}|``, ``f_{ij} ~ Bernoulli(p)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError


@dataclass(frozen=True)
class BitFlip:
    """Flip each bit with probability ``p``; fits fingerprints only."""

    p: float = 0.01
    name: str = "bit_flip"
    fits: frozenset[str] = frozenset({"fingerprint"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise PolytaskError(f"augmentation {self.name!r}: p must be in [0, 1], got {self.p}")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        flip = (torch.rand(x.shape, generator=generator).to(x.device) < self.p).to(x.dtype)
        return (x - flip).abs()
