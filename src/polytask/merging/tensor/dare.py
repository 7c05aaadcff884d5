"""DARE (Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous Models
as a Free Lunch", ICML 2024): drop and rescale, then task arithmetic.

For each task vector τ_t = θ_t − θ_0 and drop rate p = 1 − d (``density`` d):

* m_t ~ Bernoulli(d) element-wise (seeded per tensor from ``seed``, the tensor name and t);
* τ̂_t = r_t · m_t ⊙ τ_t with ``rescale="inverse"``: r_t = 1/(1 − p) = 1/d (the paper),
  ``rescale="l1"``: r_t = ‖τ_t‖₁ / ‖m_t ⊙ τ_t‖₁ (norm matching, as mergekit), or ``"none"``: 1;
* θ = θ_0 + λ Σ_t w_t τ̂_t.

The mask is :func:`~polytask.merging.tensor.seeding.keep_mask`: entry i is kept iff its 32-bit
draw U_i (one per element position, from ``seed``, the tensor name and t) is below
round(d · 2^32), so a tensor merged in row blocks gets the same mask. In the pipeline the
rescale r_t is folded into the weight of model t (w_t r_t is applied in the accumulation
instead of a separate pass over τ̂_t).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.pipeline import PipelineMethod, SparseSignMerge
from polytask.merging.tensor.protocol import check_fraction, per_model
from polytask.merging.tensor.seeding import keep_mask

__all__ = ["RNG_SCHEME", "Dare", "RandomDrop"]

#: DARE's mask scheme, as recorded in ``merge.json`` (see :mod:`~polytask.merging.tensor.seeding`)
RNG_SCHEME = (
    "keep_mask/2: keep entry i of model t iff U_i < round(d * 2^32); U_i = 2^24 H_i + L_i, "
    "H_i a byte of SFC64 seeded by BLAKE2b(seed, tensor name, t, block i div 2^20), L_i the top "
    "24 bits of splitmix64 (per element position; independent of processing order and blocks)"
)
_RESCALES = {"inverse": "r = 1/d", "l1": "r = |tau|_1 / |m * tau|_1", "none": "r = 1"}


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
    def conventions(self) -> dict[str, str]:
        return {"rng": RNG_SCHEME, "rescale": _RESCALES[self.rescale]}

    @property
    def chunkable(self) -> bool:
        return self.rescale != "l1"  # the L1 norms are those of the whole tensor

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]:
        return ()

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        return ()

    def sparsify(
        self,
        tau: torch.Tensor,
        index: int,
        name: str,
        thresholds: Sequence[float] | None,
        offset: int = 0,
    ) -> tuple[torch.Tensor, float]:
        """``(m ⊙ τ, r)`` with τ̂ = r · m ⊙ τ; ``tau`` is masked in place."""
        density = self.density if isinstance(self.density, float | int) else self.density[index]
        if density >= 1.0:
            return tau, 1.0
        keep = keep_mask(self.seed, name, index, tau.numel(), offset, density)
        before = float(tau.abs().sum()) if self.rescale == "l1" else 0.0
        if tau.is_contiguous() and tau.dtype in (torch.float32, torch.float64):
            flat = tau.detach().view(-1).numpy()
            np.multiply(flat, keep.numpy(), out=flat)
        else:
            tau.mul_(keep.reshape(tau.shape))
        if self.rescale == "l1":
            after = float(tau.abs().sum())
            return tau, before / after if after > 0 else 1.0
        if self.rescale == "inverse":
            return tau, 1.0 / density
        return tau, 1.0

    def __call__(
        self,
        tau: torch.Tensor,
        index: int,
        name: str,
        thresholds: Sequence[float] | None,
        offset: int = 0,
    ) -> torch.Tensor:
        """τ̂ = r · m ⊙ τ (``tau`` is modified in place)."""
        masked, factor = self.sparsify(tau, index, name, thresholds, offset)
        return masked if factor == 1.0 else masked.mul_(factor)


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
