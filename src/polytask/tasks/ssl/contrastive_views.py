"""Two augmented views of the same rows, for a ``contrastive`` (InfoNCE) task.

Each row ``x_i`` of a batch of ``B`` becomes two views ``t(x_i)`` and ``t'(x_i)`` drawn from the
same augmentation chain with independent randomness (SimCLR, Chen et al. 2020). The trunk sees
``[t(x_0), …, t(x_{B−1}), t'(x_0), …, t'(x_{B−1})]`` (``2B`` rows) and the target is each row's
partner index: ``a(i) = i + B`` for ``i < B`` and ``i − B`` otherwise. With dict inputs, the
augmentations act on ``modality`` and every other modality is repeated unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.data.tensors import Inputs
from polytask.tasks.ssl.augment.base import Augmentation
from polytask.tasks.ssl.modality import check_fits, modality_kind
from polytask.tasks.ssl.protocol import pick_modality


def partner_targets(b: int) -> Tensor:
    """``[2B]`` float partner indices for two stacked views of ``B`` rows."""
    i = torch.arange(b)
    return torch.cat([i + b, i]).float()


@dataclass(frozen=True)
class ContrastiveViews:
    """Stack two independently augmented views of the batch; target = partner indices."""

    augment: Sequence[Augmentation]
    modality: str | None = None
    kind: str | None = None
    #: targets are partner row indices (data-parallel sharding keeps pairs together)
    pairs_rows: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.augment:
            raise PolytaskError(
                "contrastive: needs at least one augmentation, or both views are identical"
            )
        object.__setattr__(self, "augment", tuple(self.augment))
        if self.kind is not None:
            for aug in self.augment:
                check_fits(aug.name, aug.fits, self.kind, self.modality)

    def view(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for aug in self.augment:
            x = aug(x, generator)
        return x

    def __call__(self, inputs: Inputs, generator: torch.Generator) -> tuple[Inputs, Tensor]:
        x = pick_modality(inputs, self.modality, "contrastive")
        if self.kind is None:
            kind = modality_kind(x)
            for aug in self.augment:
                check_fits(aug.name, aug.fits, kind, self.modality)
        b = int(x.shape[0])
        both = torch.cat([self.view(x, generator), self.view(x, generator)])
        target = partner_targets(b).to(x.device)
        if isinstance(inputs, Tensor):
            return both, target
        out = {k: (both if k == self.modality else torch.cat([v, v])) for k, v in inputs.items()}
        return out, target
