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

The fine-tuned tensors are visited once, one at a time. With consensus, the positive and
negative parts are accumulated separately — P = Σ w_t max(τ̂_t, 0), N = Σ w_t min(τ̂_t, 0) and
the weights of the models behind each — so after the sweep γ = sgn(P + N) (or of the sign
counts) picks P or N and its weight without revisiting any model.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from polytask._core import PolytaskError
from polytask.merging.tensor.protocol import Thresholds, compute_dtype, per_model

__all__ = [
    "PipelineMethod",
    "SparseSignMerge",
    "Sparsifier",
    "Unscaled",
    "kth_largest",
    "release_scratch",
    "scratch",
]


class Sparsifier(Protocol):
    """Step 1 of the pipeline: ``sparsifier.sparsify(tau, index, name, thresholds, offset)``.

    It returns ``(s, r)`` with τ̂ = r · s (a scalar r > 0 lets the pipeline fold the rescale into
    the model's weight instead of a separate pass); ``sparsifier(...)`` returns τ̂ itself. It
    may modify ``tau`` in place (the pipeline owns it) and must be deterministic given its
    arguments. ``tensor_ranks`` / ``global_ranks`` name the magnitude ranks it needs (or ``()``).
    """

    def __call__(
        self,
        tau: torch.Tensor,
        index: int,
        name: str,
        thresholds: Sequence[float] | None,
        offset: int,
    ) -> torch.Tensor: ...

    def sparsify(
        self,
        tau: torch.Tensor,
        index: int,
        name: str,
        thresholds: Sequence[float] | None,
        offset: int,
    ) -> tuple[torch.Tensor, float]: ...

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]: ...

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]: ...

    def check_models(self, n: int) -> None: ...

    @property
    def chunkable(self) -> bool:
        """False when the result on a block of rows depends on the rest of the tensor."""


class Unscaled:
    """``sparsify`` for sparsifiers whose ``__call__`` already returns τ̂ (r = 1)."""

    def sparsify(
        self,
        tau: torch.Tensor,
        index: int,
        name: str,
        thresholds: Sequence[float] | None,
        offset: int = 0,
    ) -> tuple[torch.Tensor, float]:
        return self(tau, index, name, thresholds, offset), 1.0  # type: ignore[operator]


_SAMPLE = 1 << 14


def kth_largest(magnitudes: torch.Tensor, k: int) -> float:
    """The exact k-th largest value (1-based) of a tensor; +inf for k = 0.

    Large tensors are bracketed from a strided sample first, so the exact selection runs on a
    thin band of values instead of the whole tensor (a full ``kthvalue`` is the fallback).
    """
    flat = magnitudes.reshape(-1)
    n = flat.numel()
    if k <= 0:
        return float("inf")
    k = min(k, n)
    if n > 16 * _SAMPLE:
        sample = flat[:: n // _SAMPLE].sort(descending=True).values
        s = sample.numel()
        q = k / n
        margin = int(4 * math.sqrt(s * q * (1 - q))) + 16
        hi_at, lo_at = int(q * s) - margin, int(q * s) + margin
        hi = float(sample[hi_at]) if hi_at > 0 else float("inf")
        if lo_at < s:
            lo = float(sample[lo_at])
            above = int(torch.count_nonzero(flat > hi)) if hi_at > 0 else 0
            if above < k:
                band = flat[(flat <= hi) & (flat >= lo)]
                need = k - above
                if band.numel() >= need:
                    return float(torch.kthvalue(band, band.numel() - need + 1).values)
    return float(torch.kthvalue(flat, n - k + 1).values)


@dataclass(frozen=True)
class SparseSignMerge:
    """Sparsify → (sign consensus) → combine → scale, on one tensor."""

    sparsifier: Sparsifier | None = None
    consensus: Literal["none", "sum", "count"] = "none"
    combine: Literal["sum", "mean"] = "sum"
    lam: float = 1.0
    weights: tuple[float, ...] | None = None

    @property
    def chunkable(self) -> bool:
        return self.sparsifier is None or self.sparsifier.chunkable

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

    @property
    def conventions(self) -> dict[str, str]:
        """The conventions this setting uses, in words (recorded in ``merge.json``)."""
        out: dict[str, str] = dict(getattr(self.sparsifier, "conventions", {}))
        if self.consensus != "none":
            weighted = "sum_t w_t tau_hat_t" if self.consensus == "sum" else "sum_t sgn(tau_hat_t)"
            out["sign_election"] = f"gamma = sgn({weighted})"
            out["sign_of_zero"] = "+ (an entry whose elected sum is 0 gets gamma = +)"
            out["agreement"] = "model t contributes where tau_hat_t != 0 and sgn(tau_hat_t) = gamma"
        agree = " over the agreeing models" if self.consensus != "none" else ""
        out["combine"] = (
            f"mean: sum_t w_t tau_hat_t / sum_t w_t{agree} (0 where none contributes)"
            if self.combine == "mean"
            else f"sum: sum_t w_t tau_hat_t{agree}"
        )
        return out

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]:
        return () if self.sparsifier is None else self.sparsifier.tensor_ranks(numel, index)

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        return () if self.sparsifier is None else self.sparsifier.global_ranks(total, index)

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
        if self.consensus == "none":
            total = torch.empty_like(b)
            tau = scratch(b, 3)  # one buffer for every model's task vector
            for t in range(n):
                tau_hat, r = self._sparse(b, finetuned[t], t, name, thresholds, offset, tau)
                _accumulate(total, tau_hat, weights[t] * r, t == 0)
                del tau_hat
            if self.combine == "mean":
                total.div_(sum(weights))
        else:
            total = self._consensus(b, finetuned, weights, name, thresholds, offset)
        if self.lam != 1.0:
            total.mul_(self.lam)
        return total.add_(b).to(base.dtype)

    def _sparse(
        self,
        b: torch.Tensor,
        theta: torch.Tensor,
        index: int,
        name: str,
        thresholds: Thresholds,
        offset: int,
        out: torch.Tensor,
    ) -> tuple[torch.Tensor, float]:
        """``(s, r)`` with τ̂ = r · s; τ = θ − θ_0 is written into ``out`` first."""
        tau = torch.sub(theta, b, out=out)
        if self.sparsifier is None:
            return tau, 1.0
        own = None if thresholds is None else thresholds[index]
        return self.sparsifier.sparsify(tau, index, name, own, offset)

    def _consensus(
        self,
        b: torch.Tensor,
        finetuned: Sequence[torch.Tensor],
        weights: list[float],
        name: str,
        thresholds: Thresholds,
        offset: int,
    ) -> torch.Tensor:
        # Float-only arithmetic throughout: on CPU, ops mixing bool and float tensors are slow.
        # The first model initialises the accumulators: no zero-fill pass.
        # pos (returned) is new; the others are reused scratch buffers (see :func:`scratch`).
        pos, neg = torch.empty_like(b), scratch(b, 0)  # Σ w max(τ̂, 0) and Σ w min(τ̂, 0)
        w_any, w_pos = scratch(b, 1), scratch(b, 2)  # Σ w [τ̂ ≠ 0] and Σ w [τ̂ > 0]
        tau, part = scratch(b, 3), scratch(b, 4)
        unit = all(w == 1.0 for w in weights)
        counted = self.consensus == "count" and not unit
        n_any = scratch(b, 5) if counted else w_any  # unweighted counts for sign="count"
        n_pos = scratch(b, 6) if counted else w_pos
        for t in range(len(finetuned)):
            w, first = weights[t], t == 0
            hat, r = self._sparse(b, finetuned[t], t, name, thresholds, offset, tau)
            torch.clamp(hat, min=0, out=part)
            _accumulate(pos, part, w * r, first)
            _accumulate(w_pos, part.gt_(0), w, first)
            if counted:
                _accumulate(n_pos, part, 1.0, first)
            torch.clamp(hat, max=0, out=part)
            _accumulate(neg, part, w * r, first)
            _accumulate(w_any, hat.ne_(0), w, first)
            if counted:
                _accumulate(n_any, hat, 1.0, first)
            del hat
        # γ = + where the (weighted) sum is >= 0, or where positives are at least as many
        if self.consensus == "sum":
            up = torch.add(pos, neg, out=tau).ge_(0)
        else:
            up = torch.mul(n_pos, 2, out=tau).sub_(n_any).ge_(0)
        down = torch.neg(up, out=part).add_(1.0)
        merged = pos.mul_(up).add_(neg.mul_(down))  # pos where up, else neg (exact: up is 0/1)
        del neg
        if self.combine == "mean":
            w_neg = w_any.sub_(w_pos).mul_(down)
            norm = w_pos.mul_(up).add_(w_neg)
            if all(w > 0 for w in weights):
                norm.clamp_(min=torch.finfo(norm.dtype).tiny)  # 0 only where merged is 0
            else:
                norm.masked_fill_(norm == 0, 1.0)
            merged.div_(norm)
        return merged


class _Scratch(threading.local):
    def __init__(self) -> None:
        self.buffers: dict[tuple[torch.dtype, int], torch.Tensor] = {}


_SCRATCH = _Scratch()


def scratch(like: torch.Tensor, slot: int) -> torch.Tensor:
    """An uninitialised buffer shaped like ``like``, reused across calls (one per slot, thread).

    Fresh multi-megabyte tensors cost a page fault per 4 KiB on first touch, as much as an
    arithmetic pass; the pipeline's temporaries therefore live in buffers kept between tensors
    (never returned to the caller). :func:`release_scratch` frees them; the executor calls it
    when a merge ends.
    """
    key = (like.dtype, slot)
    buffer = _SCRATCH.buffers.get(key)
    if buffer is None or buffer.numel() < like.numel():
        buffer = torch.empty(like.numel(), dtype=like.dtype)
        _SCRATCH.buffers[key] = buffer
    return buffer[: like.numel()].view(like.shape)


def release_scratch() -> None:
    """Free this thread's scratch buffers."""
    _SCRATCH.buffers.clear()


def _accumulate(acc: torch.Tensor, x: torch.Tensor, alpha: float, first: bool) -> None:
    """``acc += alpha · x``, or ``acc = alpha · x`` for the first model (no zero-fill pass)."""
    if first:
        acc.copy_(x) if alpha == 1.0 else torch.mul(x, alpha, out=acc)
    else:
        acc.add_(x) if alpha == 1.0 else acc.add_(x, alpha=alpha)


class PipelineMethod:
    """Base of the methods that are one :class:`SparseSignMerge` setting (``pipeline``)."""

    @property
    def chunkable(self) -> bool:
        return self.pipeline.chunkable

    @property
    def pipeline(self) -> SparseSignMerge:
        raise NotImplementedError

    def __post_init__(self) -> None:
        _ = self.pipeline  # validates the options

    @property
    def conventions(self) -> dict[str, str]:
        """The conventions of the pipeline setting (sparsifier, sign, combine), in words."""
        return self.pipeline.conventions

    def check_models(self, n: int) -> None:
        self.pipeline.check_models(n)

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]:
        return self.pipeline.tensor_ranks(numel, index)

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        return self.pipeline.global_ranks(total, index)

    def __call__(
        self,
        base: torch.Tensor,
        finetuned: Sequence[torch.Tensor],
        *,
        name: str = "",
        thresholds: Thresholds = None,
        offset: int = 0,
    ) -> torch.Tensor:
        return self.pipeline(base, finetuned, name=name, thresholds=thresholds, offset=offset)
