"""Random horizontal flip: each image is mirrored left–right with probability ``p``.

``x'[c, i, j] = x[c, i, W − 1 − j]`` if ``f = 1`` else ``x[c, i, j]``, ``f ~ Bernoulli(p)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.ssl._image import check_image


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror each image left–right with probability ``p``; fits images only."""

    p: float = 0.5
    name: str = "horizontal_flip"
    fits: frozenset[str] = frozenset({"image"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise PolytaskError(f"augmentation {self.name!r}: p must be in [0, 1], got {self.p}")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        check_image(x, f"augmentation {self.name!r}")
        flip = (torch.rand(x.shape[0], generator=generator) < self.p).to(x.device)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
