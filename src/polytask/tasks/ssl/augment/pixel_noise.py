"""Pixel noise: ``x' = clip(x + σ ε, lo, hi)``, ``ε ~ N(0, I)``, for images in a known range.

Unlike :class:`~polytask.tasks.ssl.augment.GaussianNoise` (real feature vectors), the result is
clipped back to the pixel range ``[lo, hi]`` (default ``[0, 1]``, the range the image loaders
produce), so a noisy view is still a valid image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.ssl._image import check_image


@dataclass(frozen=True)
class PixelNoise:
    """Add ``N(0, std²)`` noise to every pixel and clip to ``[lo, hi]``; fits images only."""

    std: float = 0.05
    lo: float = 0.0
    hi: float = 1.0
    name: str = "pixel_noise"
    fits: frozenset[str] = frozenset({"image"})

    def __post_init__(self) -> None:
        if not self.std >= 0.0:
            raise PolytaskError(f"augmentation {self.name!r}: std must be >= 0, got {self.std}")
        if not self.lo < self.hi:
            raise PolytaskError(
                f"augmentation {self.name!r}: needs lo < hi, got [{self.lo}, {self.hi}]"
            )

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        check_image(x, f"augmentation {self.name!r}")
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return (x + self.std * noise).clamp(self.lo, self.hi)
