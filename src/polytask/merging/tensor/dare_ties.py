"""DARE-TIES: DARE's random drop and rescale (Yu et al., ICML 2024) in place of TIES' magnitude
trim, followed by TIES' sign election and disjoint mean (Yadav et al., NeurIPS 2023).

τ̂_t = r_t · m_t ⊙ τ_t with m_t ~ Bernoulli(d) (see :mod:`~polytask.merging.tensor.dare`);
γ = sgn(Σ_t w_t τ̂_t) (or by count); τ_m = Σ_{t∈A} w_t τ̂_t / Σ_{t∈A} w_t over the models that
agree with γ; θ = θ_0 + λ τ_m.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from polytask.merging.tensor.dare import RandomDrop
from polytask.merging.tensor.pipeline import PipelineMethod, SparseSignMerge

__all__ = ["DareTies"]


@dataclass(frozen=True)
class DareTies(PipelineMethod):
    """Random drop with rescale, sign election, disjoint mean, scale by ``lam``."""

    density: float | tuple[float, ...] = 0.5
    rescale: Literal["inverse", "l1", "none"] = "inverse"
    sign: Literal["sum", "count"] = "sum"
    lam: float = 1.0
    weights: tuple[float, ...] | None = None
    seed: int = 0

    @property
    def pipeline(self) -> SparseSignMerge:
        drop = RandomDrop(self.density, self.rescale, self.seed)
        return SparseSignMerge(drop, self.sign, "mean", self.lam, self.weights)
