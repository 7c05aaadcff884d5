"""Random crop with zero padding (the standard small-image augmentation, e.g. for CIFAR).

Each image is padded by ``pad`` pixels of ``fill`` on every side and a window of the original
size is cut at an offset ``(dy, dx)`` drawn uniformly from ``{0, …, 2·pad}²``:
``x'[c, i, j] = x̃[c, i + dy, j + dx]`` with ``x̃`` the padded image — i.e. the image shifted by
``(pad − dy, pad − dx)`` pixels with the uncovered border set to ``fill``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.ssl._image import check_image


@dataclass(frozen=True)
class RandomCrop:
    """Shift each image by up to ``pad`` pixels (zero-padded random crop); fits images only."""

    pad: int = 2
    fill: float = 0.0
    name: str = "random_crop"
    fits: frozenset[str] = frozenset({"image"})

    def __post_init__(self) -> None:
        if self.pad < 0:
            raise PolytaskError(f"augmentation {self.name!r}: pad must be >= 0, got {self.pad}")

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        check_image(x, f"augmentation {self.name!r}")
        b, _, h, w = x.shape
        offsets = torch.randint(0, 2 * self.pad + 1, (b, 2), generator=generator)
        if self.pad == 0:
            return x
        padded = F.pad(x, (self.pad,) * 4, value=self.fill)
        rows = (torch.arange(h).view(1, h) + offsets[:, :1]).to(x.device)  # [B, H]
        cols = (torch.arange(w).view(1, w) + offsets[:, 1:]).to(x.device)  # [B, W]
        batch = torch.arange(b, device=x.device).view(b, 1, 1)
        out = padded.permute(0, 2, 3, 1)[batch, rows.unsqueeze(2), cols.unsqueeze(1)]
        return out.permute(0, 3, 1, 2).contiguous()
