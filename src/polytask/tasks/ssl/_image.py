"""Shape check shared by the image pretexts and augmentations: ``[B, C, H, W]`` float tensors."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError


def check_image(x: Tensor, who: str, square: bool = False) -> None:
    """Raise a one-line error unless ``x`` is a float ``[B, C, H, W]`` batch (square if asked)."""
    if x.ndim != 4 or not torch.is_floating_point(x):
        raise PolytaskError(
            f"{who}: fits image inputs [batch, channels, height, width] only, got a "
            f"{'float' if torch.is_floating_point(x) else str(x.dtype)} tensor of shape "
            f"{tuple(x.shape)}"
        )
    if square and x.shape[-1] != x.shape[-2]:
        raise PolytaskError(f"{who}: needs square images, got {x.shape[-2]}×{x.shape[-1]}")
