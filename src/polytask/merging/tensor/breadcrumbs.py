"""Model Breadcrumbs (Davari & Belilovsky, "Model Breadcrumbs: Scaling Multi-Task Model Merging
with Sparse Masks", 2023).

Each task vector loses both tails of its magnitude distribution: the largest outliers and the
many small entries. With n entries ranked by decreasing |τ_t|, g = ⌊γ·n⌋ (``gamma``) and
k = max(1, ⌊d·n⌋) (``density``):

* m_t = [|τ_t| < g-th largest |τ_t|] ⊙ [|τ_t| ≥ (g + k)-th largest |τ_t|] (no upper cut when
  g = 0), so about k entries just below the top g survive;
* θ = θ_0 + λ Σ_t w_t (m_t ⊙ τ_t) (the paper), or with ``sign="sum"``/``"count"`` TIES' sign
  election over the masked vectors (Breadcrumbs-TIES) followed by the disjoint mean
  (``combine="mean"``: Σ_{t∈A} w_t τ̂_t / Σ_{t∈A} w_t) or the disjoint sum (``"sum"``:
  Σ_{t∈A} w_t τ̂_t, as mergekit with ``normalize: false``). ``combine`` is
  ignored without a sign election (the plain sum).

Ranks are taken per tensor (the paper's per-layer masks, ``topk="tensor"``) or over the whole
model (``topk="model"``, two-pass streaming).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.pipeline import PipelineMethod, SparseSignMerge, Unscaled, kth_largest
from polytask.merging.tensor.protocol import check_fraction, per_model

__all__ = ["Breadcrumbs", "MagnitudeBand"]


@dataclass(frozen=True)
class MagnitudeBand(Unscaled):
    """Drop the top ``gamma`` fraction and keep the next ``density`` fraction by magnitude."""

    density: float | tuple[float, ...] = 0.9
    gamma: float = 0.01
    topk: Literal["tensor", "model"] = "tensor"

    def __post_init__(self) -> None:
        check_fraction(self.density, "density")
        check_fraction(self.gamma, "gamma", allow_zero=True)
        if self.topk not in ("tensor", "model"):
            raise PolytaskError(f"option 'topk' must be 'tensor' or 'model', got {self.topk!r}")

    def _ranks(self, n: int, index: int) -> tuple[int, int]:
        density = self.density if isinstance(self.density, float | int) else self.density[index]
        top = int(self.gamma * n)
        return top, min(n, top + max(1, int(density * n)))

    def check_models(self, n: int) -> None:
        per_model(self.density, n, "density", 1.0)

    @property
    def conventions(self) -> dict[str, str]:
        scope = "tensor" if self.topk == "tensor" else "whole model"
        return {
            "k": f"g = floor(gamma * n), k = max(1, floor(density * n)), n = entries of the {scope}",
            "threshold_ties": "kept: |tau| < g-th largest and |tau| >= (g + k)-th largest "
            "(ties at the lower threshold all kept, at the upper all dropped)",
        }

    @property
    def chunkable(self) -> bool:
        return True

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]:
        return self._ranks(numel, index) if self.topk == "tensor" else ()

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        return self._ranks(total, index) if self.topk == "model" else ()

    def __call__(
        self,
        tau: torch.Tensor,
        index: int,
        name: str,
        thresholds: Sequence[float] | None,
        offset: int = 0,
    ) -> torch.Tensor:
        magnitude = tau.abs()
        if thresholds is not None:
            upper, lower = thresholds
        else:
            top, bottom = self._ranks(tau.numel(), index)
            upper, lower = kth_largest(magnitude, top), kth_largest(magnitude, bottom)
        keep = magnitude.lt(upper).to(tau.dtype)
        return tau.mul_(keep.mul_(magnitude.ge_(lower)))


@dataclass(frozen=True)
class Breadcrumbs(PipelineMethod):
    """Magnitude band mask on each task vector, then sum (or TIES sign election and mean)."""

    density: float | tuple[float, ...] = 0.9
    gamma: float = 0.01
    topk: Literal["tensor", "model"] = "tensor"
    sign: Literal["none", "sum", "count"] = "none"
    lam: float = 1.0
    weights: tuple[float, ...] | None = None
    combine: Literal["mean", "sum"] = "mean"

    @property
    def pipeline(self) -> SparseSignMerge:
        band = MagnitudeBand(self.density, self.gamma, self.topk)
        combine: Literal["sum", "mean"] = "sum" if self.sign == "none" else self.combine
        return SparseSignMerge(band, self.sign, combine, self.lam, self.weights)
