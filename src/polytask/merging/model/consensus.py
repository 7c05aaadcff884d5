"""Consensus merging (Wang et al. 2024, "Localizing Task Information for Improved Model Merging
and Compression", ICML).

Build the TALL mask m_t = 1{|τ_t| ≥ λ_t·|τ_MTL − τ_t|} of every task (see
:mod:`~polytask.merging.model.tall`), count for each weight how many tasks use it, and keep only
the weights used by at least ``k`` tasks:

    m_cons = 1{ Σ_t m_t ≥ k },        θ = θ_0 + scaling · (m_cons ⊙ τ_MTL)

where τ_MTL is the task-arithmetic vector Σ_t τ_t or the TIES vector (``combine``), or a merged
vector the caller passes. ``k = 2`` (default) removes "catastrophic" weights (used by no task)
and "selfish" ones (used by one task); ``k = 1`` removes only catastrophic weights; ``k = 0``
keeps everything (plain task arithmetic / TIES); ``k > T`` removes everything (θ = θ_0).

Example:
    >>> import torch
    >>> base = {"w": torch.zeros(3)}
    >>> ft = [{"w": torch.tensor([1.0, 1.0, 0.0])}, {"w": torch.tensor([1.0, 0.0, 1.0])}]
    >>> ConsensusMerge(k=2, lambdas=0.5).merge(base, ft).state["w"]
    tensor([2., 0., 0.])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.merging.model._checkpoints import (
    add_vector,
    check_checkpoints,
    check_number,
    task_vectors,
)
from polytask.merging.model._combine import (
    COMBINES,
    TIES_CONVENTIONS,
    check_given_vector,
    combine_vectors,
)
from polytask.merging.model.protocol import MergeOutcome
from polytask.merging.model.tall import resolve_lambdas, tall_masks

_NAME = "Consensus merging"


def consensus_mask(masks: Sequence[Mapping[str, Tensor]], k: int) -> dict[str, Tensor]:
    """1{Σ_t m_t ≥ k} per tensor."""
    return {name: count >= k for name, count in usage_counts(masks).items()}


def usage_counts(masks: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Σ_t m_t per tensor: how many tasks use each weight (int64)."""
    return {name: torch.stack([m[name] for m in masks]).to(torch.int64).sum(0) for name in masks[0]}


@dataclass(frozen=True)
class ConsensusMerge:
    """Keep the entries of τ_MTL that at least ``k`` TALL masks select.

    Args:
        k: minimum number of tasks whose mask must select a weight (integer ≥ 0).
        lambdas: TALL λ for all tasks, or one per task (ignored when ``masks`` are passed).
        combine: ``"task_arithmetic"`` (Σ τ_t) or ``"ties"`` for τ_MTL when it is not given.
        ties_density: fraction of entries TIES keeps per tensor.
        scaling: multiplies the masked vector.
        strict: use > instead of ≥ in the TALL mask test.
    """

    k: int = 2
    lambdas: float | tuple[float, ...] = 0.4
    combine: Literal["task_arithmetic", "ties"] = "task_arithmetic"
    ties_density: float = 0.2
    scaling: float = 1.0
    strict: bool = False

    @property
    def needs(self) -> frozenset[str]:
        return frozenset()

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise PolytaskError(f"{_NAME}: k must be an integer ≥ 0, got {self.k!r}")
        if self.combine not in COMBINES:
            raise PolytaskError(f"{_NAME}: combine must be one of {COMBINES}, got {self.combine!r}")
        check_number(self.ties_density, "ties_density", _NAME)
        if not 0.0 < self.ties_density <= 1.0:
            raise PolytaskError(f"{_NAME}: ties_density must be in (0, 1], got {self.ties_density}")
        check_number(self.scaling, "scaling", _NAME, low=-float("inf"))
        lambdas = (self.lambdas,) if isinstance(self.lambdas, int | float) else self.lambdas
        for lam in lambdas:
            check_number(lam, "lambda", _NAME)

    def merge(
        self,
        base: Mapping[str, Tensor],
        finetuned: Sequence[Mapping[str, Tensor]],
        /,
        *,
        merged_vector: Mapping[str, Tensor] | None = None,
        masks: Sequence[Mapping[str, Tensor]] | None = None,
    ) -> MergeOutcome:
        """θ_0 + scaling·(m_cons ⊙ τ_MTL); ``masks`` may be given (e.g. validated TALL masks)."""
        check_checkpoints(base, finetuned, _NAME)
        vectors = task_vectors(base, finetuned)
        if merged_vector is None:
            merged = combine_vectors(vectors, self.combine, self.ties_density, _NAME)
        else:
            merged = check_given_vector(dict(merged_vector), vectors[0], _NAME)
        if masks is None:
            lambdas: list[float] | None = list(resolve_lambdas(self.lambdas, len(vectors), _NAME))
            task_masks = tall_masks(vectors, merged, lambdas or [], self.strict)
        else:
            lambdas = None
            task_masks = [self._check_mask(m, i, merged) for i, m in enumerate(masks)]
            if len(task_masks) != len(vectors):
                raise PolytaskError(f"{_NAME}: {len(task_masks)} masks for {len(vectors)} tasks")
        counts = usage_counts(task_masks)
        keep = {name: c >= self.k for name, c in counts.items()}
        masked = {name: merged[name] * keep[name].to(merged[name].dtype) for name in merged}
        total = sum(c.numel() for c in counts.values())
        histogram = [
            sum(int((c == j).sum()) for c in counts.values()) for j in range(len(vectors) + 1)
        ]
        metadata: dict[str, Any] = {
            "method": "consensus",
            "reference": "Wang et al. 2024, Localizing Task Information for Improved Model "
            "Merging and Compression",
            "k": self.k,
            "lambdas": lambdas,
            "masks_source": "given" if masks is not None else "tall",
            "mask_rule": ">" if self.strict else ">=",
            "combine": "given" if merged_vector is not None else self.combine,
            "ties_density": self.ties_density if self.combine == "ties" else None,
            "ties_topk": "per_tensor" if self.combine == "ties" else None,
            "ties_conventions": TIES_CONVENTIONS if self.combine == "ties" else None,
            "scaling": self.scaling,
            "usage_histogram": histogram,
            "kept_fraction": sum(int(v.sum()) for v in keep.values()) / max(total, 1),
            "non_floating_tensors": "copied from base",
        }
        return MergeOutcome(state=add_vector(base, masked, self.scaling), metadata=metadata)

    @staticmethod
    def _check_mask(
        mask: Mapping[str, Tensor], index: int, merged: Mapping[str, Tensor]
    ) -> dict[str, Tensor]:
        out = {}
        for name, ref in merged.items():
            if name not in mask:
                raise PolytaskError(f"{_NAME}: mask {index} lacks tensor '{name}'")
            if tuple(mask[name].shape) != tuple(ref.shape):
                raise PolytaskError(
                    f"{_NAME}: mask {index} tensor '{name}' has shape {tuple(mask[name].shape)}, "
                    f"expected {tuple(ref.shape)}"
                )
            out[name] = mask[name].to(torch.bool)
        return out
