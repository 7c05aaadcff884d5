"""Model Stock (Jang et al., "Model Stock: All we need is just a few fine-tuned models", ECCV
2024).

Per tensor, with N fine-tuned models, task vectors τ_t = θ_t − θ_0 and cos θ the mean pairwise
cosine between them:

    t = N cos θ / (1 + (N − 1) cos θ),        θ = t · mean_t(θ_t) + (1 − t) · θ_0.

The mean pairwise cosine is computed in one pass over the models from the sum of unit task
vectors u_t: Σ_{i≠j} ⟨u_i, u_j⟩ = ‖Σ_t u_t‖² − N'. Zero task vectors are left out (N' is the
number of non-zero ones); a negative mean cosine is clamped to 0 (t = 0, the base). With one
model, t = 1 (that model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.protocol import NoThresholds, Thresholds, compute_dtype

__all__ = ["ModelStock"]


@dataclass(frozen=True)
class ModelStock(NoThresholds):
    """Interpolate between the base and the models' mean by the Model Stock ratio t."""

    chunkable: ClassVar[bool] = False

    def check_models(self, n: int) -> None:
        if n < 1:
            raise PolytaskError("model stock needs at least one fine-tuned model")

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
        b = base.to(compute_dtype(base.dtype))
        total = torch.zeros_like(b)
        units = torch.zeros_like(b)
        nonzero = 0
        for i in range(n):
            tau = finetuned[i].to(b.dtype) - b
            total.add_(tau)
            norm = float(tau.norm())
            if norm > 0:
                units.add_(tau, alpha=1.0 / norm)
                nonzero += 1
            del tau
        if n == 1:
            ratio = 1.0
        else:
            cos = (
                (float(units.square().sum()) - nonzero) / (nonzero * (nonzero - 1))
                if nonzero > 1
                else 0.0
            )
            cos = min(1.0, max(0.0, cos))
            ratio = n * cos / (1 + (n - 1) * cos)
        return (b + total.mul_(ratio / n)).to(base.dtype)
