"""TIES-merging (Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
NeurIPS 2023).

With τ_t = θ_t − θ_0:

* **trim**: keep the k = max(1, ⌊d·n⌋) largest-magnitude entries of each τ_t, τ̂_t = τ_t ⊙ m_t
  with m_t = [|τ_t| ≥ k-th largest |τ_t|] (ties at the threshold are all kept);
* **elect**: γ = sgn(Σ_t w_t τ̂_t) (``sign="sum"``; 0 counts as +) or sgn(Σ_t sgn τ̂_t)
  (``sign="count"``);
* **disjoint merge**: τ_m = Σ_{t∈A} w_t τ̂_t / Σ_{t∈A} w_t, A = {t : τ̂_t ≠ 0, sgn τ̂_t = γ}
  (``combine="mean"``, the paper), or the disjoint sum τ_m = Σ_{t∈A} w_t τ̂_t (``"sum"``,
  mergekit's ``ties`` with ``normalize: false``);
* θ = θ_0 + λ τ_m.

``topk="tensor"`` ranks within each tensor (mergekit, peft); ``topk="model"`` ranks over the
whole flattened task vector (the paper's code, fusion-bench); the executor computes the global
threshold in a streaming pre-pass (called on a lone tensor, that tensor is the whole model). ``density`` may be one value or one per model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.pipeline import PipelineMethod, SparseSignMerge, Unscaled, kth_largest
from polytask.merging.tensor.protocol import check_fraction, per_model

__all__ = ["MagnitudeTopK", "Ties"]


def _keep_count(density: float, n: int) -> int:
    return max(1, int(density * n)) if n else 0


@dataclass(frozen=True)
class MagnitudeTopK(Unscaled):
    """Keep the entries whose magnitude is at least the k-th largest (per tensor or per model)."""

    density: float | tuple[float, ...] = 0.2
    topk: Literal["tensor", "model"] = "tensor"

    def __post_init__(self) -> None:
        check_fraction(self.density, "density")
        if self.topk not in ("tensor", "model"):
            raise PolytaskError(f"option 'topk' must be 'tensor' or 'model', got {self.topk!r}")

    @property
    def conventions(self) -> dict[str, str]:
        scope = "tensor" if self.topk == "tensor" else "whole model (all merged tensors)"
        return {
            "k": f"max(1, floor(density * n)), n = number of entries of the {scope}",
            "threshold_ties": "every entry whose |tau| equals the k-th largest is kept "
            "(more than k when several tie)",
        }

    def _density(self, index: int) -> float:
        return self.density if isinstance(self.density, float | int) else self.density[index]

    def check_models(self, n: int) -> None:
        per_model(self.density, n, "density", 1.0)

    @property
    def chunkable(self) -> bool:
        return True

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]:
        scoped = self.topk == "tensor" and self._density(index) < 1.0
        return (_keep_count(self._density(index), numel),) if scoped else ()

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        scoped = self.topk == "model" and self._density(index) < 1.0
        return (_keep_count(self._density(index), total),) if scoped else ()

    def __call__(
        self,
        tau: torch.Tensor,
        index: int,
        name: str,
        thresholds: Sequence[float] | None,
        offset: int = 0,
    ) -> torch.Tensor:
        density = self._density(index)
        if density >= 1.0:
            return tau
        magnitude = tau.abs()
        if thresholds is not None:
            threshold = thresholds[0]
        else:
            threshold = kth_largest(magnitude, _keep_count(density, tau.numel()))
        return tau.mul_(magnitude.ge_(threshold))  # float 0/1 mask: fast on CPU


@dataclass(frozen=True)
class Ties(PipelineMethod):
    """TIES: trim to the top-``density`` magnitudes, elect signs, disjoint mean, scale by ``lam``."""

    density: float | tuple[float, ...] = 0.2
    topk: Literal["tensor", "model"] = "tensor"
    sign: Literal["sum", "count"] = "sum"
    lam: float = 1.0
    weights: tuple[float, ...] | None = None
    combine: Literal["mean", "sum"] = "mean"

    @property
    def pipeline(self) -> SparseSignMerge:
        return SparseSignMerge(
            MagnitudeTopK(self.density, self.topk), self.sign, self.combine, self.lam, self.weights
        )
