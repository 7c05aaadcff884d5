"""What an augmentation is: a seeded tensor transform that declares the modality kinds it fits."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Augmentation(Protocol):
    """``aug(x, generator) -> x'`` of the same shape; ``fits`` lists the modality kinds it suits."""

    @property
    def name(self) -> str: ...
    @property
    def fits(self) -> frozenset[str]: ...

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor: ...
