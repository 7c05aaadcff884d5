"""Gaussian noise: ``x' = x + σ ε``, ``ε ~ N(0, I)``, for real-valued feature vectors."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError


@dataclass(frozen=True)
class GaussianNoise:
    """Add ``N(0, std²)`` noise to every feature; fits real vectors (not bits, not images)."""

    std: float = 0.1
    name: str = "gaussian_noise"
    fits: frozenset[str] = frozenset({"vector"})

    def __post_init__(self) -> None:
        if not self.std >= 0.0:
            raise PolytaskError(f"augmentation {self.name!r}: std must be >= 0, got {self.std}")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return x + self.std * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
