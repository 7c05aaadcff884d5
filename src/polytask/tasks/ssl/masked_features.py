"""Masked feature reconstruction for vector inputs (the tabular/fingerprint analogue of MAE).

For each row, ``k = max(1, round(r · F))`` of its ``F`` features are chosen uniformly at random
(``r`` = ``mask_ratio``) and replaced by ``mask_value`` in the inputs the trunk sees. The target
is the original value at the masked positions and NaN elsewhere, so the task's masked loss
(``mse``: ``1/|M| Σ_{(i,j)∈M} (ẑ_{ij} − x_{ij})²``) scores the masked positions only. Pair it
with a ``reconstruction`` task of width ``F``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.data.tensors import Inputs
from polytask.tasks.ssl.protocol import pick_modality, replace_modality


@dataclass(frozen=True)
class MaskedFeatures:
    """Hide ``mask_ratio`` of each row's features; target = hidden values (NaN elsewhere)."""

    mask_ratio: float = 0.15
    mask_value: float = 0.0
    modality: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise PolytaskError(
                f"masked_features: mask_ratio must be in (0, 1), got {self.mask_ratio}"
            )

    def mask(self, shape: torch.Size, generator: torch.Generator) -> Tensor:
        """Boolean ``[B, F]`` mask with exactly ``k`` True entries per row."""
        b, f = int(shape[0]), int(shape[-1])
        k = max(1, round(self.mask_ratio * f))
        order = torch.rand((b, f), generator=generator).argsort(dim=1)
        out = torch.zeros((b, f), dtype=torch.bool)
        out.scatter_(1, order[:, :k], True)
        return out

    def __call__(self, inputs: Inputs, generator: torch.Generator) -> tuple[Inputs, Tensor]:
        x = pick_modality(inputs, self.modality, "masked_features")
        if x.ndim != 2:
            raise PolytaskError(
                f"masked_features: needs [rows, features] inputs, got shape {tuple(x.shape)}"
            )
        m = self.mask(x.shape, generator).to(x.device)
        seen = x.masked_fill(m, self.mask_value)
        target = torch.where(m, x.float(), torch.full_like(x, float("nan"), dtype=torch.float32))
        return replace_modality(inputs, self.modality, seen), target
