"""Feature (bit) dropout: each feature is set to 0 independently with probability ``p``.

``x'_{ij} = x_{ij} · m_{ij}``, ``m_{ij} ~ Bernoulli(1 − p)`` (no rescaling: for fingerprints a
dropped bit reads as an absent substructure, as in the fingerprint augmentations of MolCLR-style
contrastive pre-training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError


@dataclass(frozen=True)
class FeatureDropout:
    """Zero each feature with probability ``p``; fits fingerprints and real vectors."""

    p: float = 0.1
    name: str = "feature_dropout"
    fits: frozenset[str] = frozenset({"fingerprint", "vector"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.p < 1.0:
            raise PolytaskError(f"augmentation {self.name!r}: p must be in [0, 1), got {self.p}")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        keep = torch.rand(x.shape, generator=generator).to(x.device) >= self.p
        return x * keep.to(x.dtype)
