"""Weight averaging ("model soups", Wortsman et al., ICML 2022): θ = Σ_t w_t θ_t / Σ_t w_t.

The base tensor only fixes the output's dtype (and which tensors are merged); with uniform
weights this is the plain mean of the fine-tuned models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.protocol import NoThresholds, Thresholds, compute_dtype, per_model

__all__ = ["WeightAverage"]


@dataclass(frozen=True)
class WeightAverage(NoThresholds):
    """Weighted mean of the fine-tuned tensors (uniform by default)."""

    chunkable: ClassVar[bool] = True

    weights: tuple[float, ...] | None = None

    def check_models(self, n: int) -> None:
        if n < 1:
            raise PolytaskError("averaging needs at least one fine-tuned model")
        if sum(per_model(self.weights, n, "weights", 1.0)) == 0:
            raise PolytaskError("option 'weights' sums to 0; the weighted mean is undefined")

    def __call__(
        self,
        base: torch.Tensor,
        finetuned: Sequence[torch.Tensor],
        *,
        name: str = "",
        thresholds: Thresholds = None,
        offset: int = 0,
    ) -> torch.Tensor:
        n = len(finetuned)
        self.check_models(n)
        weights = per_model(self.weights, n, "weights", 1.0)
        total = torch.zeros(base.shape, dtype=compute_dtype(base.dtype))
        for t in range(n):
            total.add_(finetuned[t].to(total.dtype), alpha=weights[t])
        return total.div_(sum(weights)).to(base.dtype)
