"""Task arithmetic (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023).

θ = θ_0 + λ Σ_t w_t (θ_t − θ_0). With the defaults (λ = 1, w_t = 1) the sum is accumulated in
model order with no multiplications, so the result equals ``base + lam * sum(θ_t - base)``
computed in the same dtype bit for bit. Negative weights subtract a task ("negation").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.protocol import NoThresholds, Thresholds, compute_dtype, per_model

__all__ = ["TaskArithmetic"]


@dataclass(frozen=True)
class TaskArithmetic(NoThresholds):
    """``θ_0 + λ Σ_t w_t τ_t``: one scaling ``lam`` and optional per-model ``weights``."""

    chunkable: ClassVar[bool] = True

    lam: float = 1.0
    weights: tuple[float, ...] | None = None

    def check_models(self, n: int) -> None:
        if n < 1:
            raise PolytaskError("task arithmetic needs at least one fine-tuned model")
        per_model(self.weights, n, "weights", 1.0)

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
        b = base.to(compute_dtype(base.dtype))
        total = torch.zeros_like(b)
        for t in range(n):
            tau = finetuned[t].to(b.dtype) - b
            if weights[t] == 1.0:
                total.add_(tau)
            else:
                total.add_(tau, alpha=weights[t])
            del tau
        if self.lam != 1.0:
            total.mul_(self.lam)
        return (b + total).to(base.dtype)
