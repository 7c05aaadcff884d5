"""DARE (Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous Models
as a Free Lunch", ICML 2024): drop and rescale, then task arithmetic.

For each task vector τ_t = θ_t − θ_0 and drop rate p = 1 − d (``density`` d):

* m_t ~ Bernoulli(d) element-wise (seeded per tensor from ``seed``, the tensor name and t);
* τ̂_t = r_t · m_t ⊙ τ_t with ``rescale="inverse"``: r_t = 1/(1 − p) = 1/d (the paper),
  ``rescale="l1"``: r_t = ‖τ_t‖₁ / ‖m_t ⊙ τ_t‖₁ (norm matching, as mergekit), or ``"none"``: 1;
* θ = θ_0 + λ Σ_t w_t τ̂_t.

The mask is ``u < d`` with u float32 uniform draws from :func:`~polytask.merging.tensor.seeding.uniform`
(per element position, so a tensor merged in row blocks gets the same mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.pipeline import PipelineMethod, SparseSignMerge
from polytask.merging.tensor.protocol import check_fraction, per_model
from polytask.merging.tensor.seeding import uniform

__all__ = ["Dare", "RandomDrop"]


@dataclass(frozen=True)
class RandomDrop:
    """Keep each entry with probability ``density``, then rescale (DARE's sparsifier)."""

    density: float | tuple[float, ...] = 0.5
    rescale: Literal["inverse", "l1", "none"] = "inverse"
    seed: int = 0

    def __post_init__(self) -> None:
        check_fraction(self.density, "density")
        if self.rescale not in ("inverse", "l1", "none"):
            raise PolytaskError(
                f"option 'rescale' must be 'inverse', 'l1' or 'none', got {self.rescale!r}"
            )

    def check_models(self, n: int) -> None:
        per_model(self.density, n, "density", 1.0)

    @property
    def chunkable(self) -> bool:
        return self.rescale != "l1"  # the L1 norms are those of the whole tensor

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]:
        return ()

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        return ()

    def __call__(
        self,
        tau: torch.Tensor,
        index: int,
        name: str,
        thresholds: Sequence[float] | None,
        offset: int = 0,
    ) -> torch.Tensor:
        density = self.density if isinstance(self.density, float | int) else self.density[index]
        if density >= 1.0:
            return tau
        keep = uniform(self.seed, name, index, tau.shape, offset).lt_(density).to(tau.dtype)
        if self.rescale == "l1":
            before = tau.abs().sum()
            tau.mul_(keep)
            after = tau.abs().sum()
            if after > 0:
                tau.mul_(before / after)
            return tau
        tau.mul_(keep)
        if self.rescale == "inverse":
            tau.div_(density)
        return tau


@dataclass(frozen=True)
class Dare(PipelineMethod):
    """DARE: random drop with rescale, then ``θ_0 + λ Σ w_t τ̂_t`` (no sign election)."""

    density: float | tuple[float, ...] = 0.5
    rescale: Literal["inverse", "l1", "none"] = "inverse"
    lam: float = 1.0
    weights: tuple[float, ...] | None = None
    seed: int = 0

    @property
    def pipeline(self) -> SparseSignMerge:
        drop = RandomDrop(self.density, self.rescale, self.seed)
        return SparseSignMerge(drop, "none", "sum", self.lam, self.weights)
