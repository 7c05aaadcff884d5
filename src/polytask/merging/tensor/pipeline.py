"""The one pipeline behind TIES, DARE, DARE-TIES, Breadcrumbs and DELLA.

For task vectors τ_t = θ_t − θ_0 (t = 1..T, weights w_t, scaling λ):

1. **sparsify**: τ̂_t = S_t(τ_t) — magnitude top-k (TIES), random drop with rescale (DARE),
   a magnitude band (Breadcrumbs), magnitude-ranked random drop (DELLA), or nothing;
2. **sign consensus** (optional): γ = sgn(Σ_t w_t τ̂_t) (``"sum"``) or sgn(Σ_t sgn τ̂_t)
   (``"count"``), with 0 counted as +; model t contributes where τ̂_t ≠ 0 and sgn τ̂_t = γ;
3. **combine**: ``"sum"``: τ_m = Σ_t w_t a_t τ̂_t, or ``"mean"`` (TIES' disjoint mean):
   τ_m = Σ_t w_t a_t τ̂_t / Σ_t w_t a_t (0 where no model contributes), with a_t the agreement
   mask (all ones without consensus);
4. **scale**: θ = θ_0 + λ τ_m.

The fine-tuned tensors are visited one at a time: one sweep without consensus, two with it
(sparsification is deterministic given the thresholds and the per-tensor seed, so the second
sweep recomputes τ̂_t instead of holding all of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.protocol import Thresholds, compute_dtype, per_model

__all__ = ["SparseSignMerge", "Sparsifier", "kth_largest"]


class Sparsifier(Protocol):
    """Step 1 of the pipeline: ``sparsifier(tau, index, name, thresholds) -> tau_hat``.

    It may modify ``tau`` in place (the pipeline owns it) and must be deterministic given its
    arguments. ``global_ranks`` names the whole-model magnitude ranks it needs (or ``()``).
    """

    def __call__(
        self, tau: torch.Tensor, index: int, name: str, thresholds: Sequence[float] | None
    ) -> torch.Tensor: ...

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]: ...

    def check_models(self, n: int) -> None: ...


def kth_largest(magnitudes: torch.Tensor, k: int) -> float:
    """The k-th largest value (1-based) of a flat tensor; +inf for k = 0."""
    n = magnitudes.numel()
    if k <= 0:
        return float("inf")
    k = min(k, n)
    return float(torch.kthvalue(magnitudes.reshape(-1), n - k + 1).values)


@dataclass(frozen=True)
class SparseSignMerge:
    """Sparsify → (sign consensus) → combine → scale, on one tensor."""

    sparsifier: Sparsifier | None = None
    consensus: Literal["none", "sum", "count"] = "none"
    combine: Literal["sum", "mean"] = "sum"
    lam: float = 1.0
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.consensus not in ("none", "sum", "count"):
            raise PolytaskError(
                f"sign consensus must be 'none', 'sum' or 'count', got {self.consensus!r}"
            )
        if self.combine not in ("sum", "mean"):
            raise PolytaskError(f"combine must be 'sum' or 'mean', got {self.combine!r}")

    def check_models(self, n: int) -> None:
        if n < 1:
            raise PolytaskError("merging needs at least one fine-tuned model")
        per_model(self.weights, n, "weights", 1.0)
        if self.sparsifier is not None:
            self.sparsifier.check_models(n)

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        return () if self.sparsifier is None else self.sparsifier.global_ranks(total, index)

    def _sparse(
        self, base: torch.Tensor, theta: torch.Tensor, index: int, name: str, thresholds: Thresholds
    ) -> torch.Tensor:
        tau = theta.to(base.dtype) - base
        if self.sparsifier is None:
            return tau
        own = None if thresholds is None else thresholds[index]
        return self.sparsifier(tau, index, name, own)

    def __call__(
        self,
        base: torch.Tensor,
        finetuned: Sequence[torch.Tensor],
        *,
        name: str = "",
        thresholds: Thresholds = None,
    ) -> torch.Tensor:
        n = len(finetuned)
        self.check_models(n)
        weights = per_model(self.weights, n, "weights", 1.0)
        b = base.to(compute_dtype(base.dtype))
        sign: torch.Tensor | None = None
        if self.consensus != "none":
            score = torch.zeros_like(b)
            for t in range(n):
                tau_hat = self._sparse(b, finetuned[t], t, name, thresholds)
                if self.consensus == "sum":
                    score.add_(tau_hat, alpha=weights[t])
                else:
                    score.add_(torch.sign(tau_hat))
                del tau_hat
            sign = score >= 0
            del score
        total = torch.zeros_like(b)
        norm = torch.zeros_like(b) if self.combine == "mean" else None
        for t in range(n):
            tau_hat = self._sparse(b, finetuned[t], t, name, thresholds)
            if sign is not None:
                agree = (tau_hat > 0) == sign
                agree &= tau_hat != 0
                tau_hat.mul_(agree)
                if norm is not None:
                    norm.add_(agree, alpha=weights[t])
            elif norm is not None:
                norm.add_(weights[t])
            if weights[t] == 1.0:
                total.add_(tau_hat)
            else:
                total.add_(tau_hat, alpha=weights[t])
            del tau_hat
        if norm is not None:
            norm.masked_fill_(norm == 0, 1.0)  # where nothing contributes, total is 0 already
            total.div_(norm)
        if self.lam != 1.0:
            total.mul_(self.lam)
        return (b + total).to(base.dtype)
