"""DELLA (Deep et al., "DELLA-Merging: Reducing Interference in Model Merging through
Magnitude-Based Sampling", 2024): MAGPRUNE, then TIES' sign election and disjoint mean.

MAGPRUNE, per row of each task vector (the last dimension; a 1-D tensor is one row) of c
entries: rank the entries by increasing magnitude, r_i ∈ {0, …, c−1}, and keep entry i with
probability

    q_i = (d − ε) + 2ε · r_i / (c − 1)        (q_i = d when c = 1),

so larger magnitudes are kept more often and the mean keep rate is the ``density`` d. Kept
entries are rescaled by 1/q_i (``rescale="inverse"``, the paper) or not (``"none"``). Then
γ = sgn(Σ_t w_t τ̂_t) (or by count), τ_m is the disjoint mean of the agreeing τ̂_t
(``combine="mean"``: Σ_{t∈A} w_t τ̂_t / Σ_{t∈A} w_t) or their sum (``"sum"``: Σ_{t∈A} w_t τ̂_t,
as mergekit with ``normalize: false``) and θ = θ_0 + λ τ_m. Ranks use a stable sort, draws
a per-tensor seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.pipeline import PipelineMethod, SparseSignMerge, Unscaled
from polytask.merging.tensor.protocol import check_fraction, per_model
from polytask.merging.tensor.seeding import uniform

__all__ = ["Della", "MagnitudeSampling"]


@dataclass(frozen=True)
class MagnitudeSampling(Unscaled):
    """DELLA's MAGPRUNE: keep probabilities linear in the magnitude rank within each row."""

    density: float | tuple[float, ...] = 0.5
    epsilon: float = 0.1
    rescale: Literal["inverse", "none"] = "inverse"
    seed: int = 0

    def __post_init__(self) -> None:
        check_fraction(self.density, "density")
        for d in [self.density] if isinstance(self.density, float | int) else self.density:
            if not (self.epsilon >= 0 and d - self.epsilon > 0 and d + self.epsilon <= 1):
                raise PolytaskError(
                    f"option 'epsilon' must satisfy 0 <= epsilon < density <= 1 - epsilon, "
                    f"got epsilon={self.epsilon} with density={d}"
                )
        if self.rescale not in ("inverse", "none"):
            raise PolytaskError(
                f"option 'rescale' must be 'inverse' or 'none', got {self.rescale!r}"
            )

    def check_models(self, n: int) -> None:
        per_model(self.density, n, "density", 1.0)

    @property
    def conventions(self) -> dict[str, str]:
        return {
            "rng": "uniform/1: U[0, 1) per element position, PCG64 seeded by BLAKE2b(seed, "
            "tensor name, t, block i div 65536); keep iff U_i < q_i",
            "rank_ties": "stable sort: equal magnitudes ranked by position",
        }

    @property
    def chunkable(self) -> bool:
        return True

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]:
        return ()

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        return ()

    def keep_probability(self, tau: torch.Tensor, index: int) -> torch.Tensor:
        """q for every entry of ``tau`` (same shape)."""
        density = self.density if isinstance(self.density, float | int) else self.density[index]
        rows = tau.reshape(-1, tau.shape[-1]) if tau.dim() else tau.reshape(1, 1)
        cols = rows.shape[1]
        if cols <= 1 or self.epsilon == 0:
            return torch.full_like(tau, density)
        order = torch.argsort(rows.abs(), dim=1, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(cols).expand_as(order).contiguous())
        q = ranks.to(tau.dtype).mul_(2 * self.epsilon / (cols - 1)).add_(density - self.epsilon)
        return q.reshape(tau.shape)

    def __call__(
        self,
        tau: torch.Tensor,
        index: int,
        name: str,
        thresholds: Sequence[float] | None,
        offset: int = 0,
    ) -> torch.Tensor:
        q = self.keep_probability(tau, index)
        keep = uniform(self.seed, name, index, tau.shape, offset, dtype=tau.dtype).lt_(q)
        tau.mul_(keep)
        if self.rescale == "inverse":
            tau.div_(q)
        return tau


@dataclass(frozen=True)
class Della(PipelineMethod):
    """MAGPRUNE sampling with rescale, sign election, disjoint mean, scale by ``lam``."""

    density: float | tuple[float, ...] = 0.5
    epsilon: float = 0.1
    rescale: Literal["inverse", "none"] = "inverse"
    sign: Literal["sum", "count"] = "sum"
    lam: float = 1.0
    weights: tuple[float, ...] | None = None
    seed: int = 0
    combine: Literal["mean", "sum"] = "mean"

    @property
    def pipeline(self) -> SparseSignMerge:
        sampling = MagnitudeSampling(self.density, self.epsilon, self.rescale, self.seed)
        return SparseSignMerge(sampling, self.sign, self.combine, self.lam, self.weights)
