"""TALL masks (Wang et al. 2024, "Localizing Task Information for Improved Model Merging and
Compression", ICML).

Given task vectors τ_t = θ_t − θ_0 and a merged multi-task vector τ_MTL (task arithmetic Σ_t τ_t,
or TIES), the mask of task t keeps the entries where the task's own vector dominates what the
other tasks add:

    m_t = 1{ |τ_t| ≥ λ_t · |τ_MTL − τ_t| }            (``strict=True`` uses >, as the authors' code)

and task t's model is rebuilt from the ONE merged vector and its mask:

    θ_t ≈ θ_0 + m_t ⊙ τ_MTL.

λ_t is given (one value for all tasks, or one per task) or chosen per task from ``grid`` by a
user-supplied ``validate(task, state_dict) -> score`` (higher is better; first best wins). The
masks are stored bit-packed (:mod:`~polytask.merging.model.bitpack`) in a
:class:`~polytask.merging.model.tall_store.TallMaskSet`.

Example:
    >>> import torch
    >>> base = {"w": torch.zeros(4)}
    >>> ft = [{"w": torch.tensor([1.0, 0.0, 0.5, -1.0])}, {"w": torch.tensor([0.0, 1.0, 0.5, 1.0])}]
    >>> out = TallMasks(lambdas=1.0).merge(base, ft)
    >>> out.metadata["mask_density"]
    [0.75, 0.75]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
from polytask.merging.model.tall_store import TallMaskSet

Validate = Callable[[int, dict[str, Tensor]], float]
_NAME = "TALL masks"


def tall_masks(
    vectors: Sequence[Mapping[str, Tensor]],
    merged: Mapping[str, Tensor],
    lambdas: Sequence[float],
    strict: bool = False,
) -> list[dict[str, Tensor]]:
    """m_t = |τ_t| ≥ λ_t·|τ_MTL − τ_t| (or > if ``strict``), one boolean dict per task."""
    compare = torch.gt if strict else torch.ge
    return [
        {k: compare(v[k].abs(), lam * (merged[k] - v[k]).abs()) for k in merged}
        for v, lam in zip(vectors, lambdas)
    ]


def resolve_lambdas(
    lambdas: float | tuple[float, ...], num_tasks: int, method: str
) -> tuple[float, ...]:
    """One λ per task from a scalar or a per-task tuple (validated)."""
    values = (lambdas,) * num_tasks if isinstance(lambdas, int | float) else tuple(lambdas)
    if len(values) != num_tasks:
        raise PolytaskError(f"{method}: {len(values)} lambdas given for {num_tasks} tasks")
    for lam in values:
        check_number(lam, "lambda", method)
    return tuple(float(lam) for lam in values)


def density(mask: Mapping[str, Tensor]) -> float:
    total = sum(m.numel() for m in mask.values())
    return float(sum(int(m.sum()) for m in mask.values()) / max(total, 1))


@dataclass(frozen=True)
class TallMasks:
    """Per-task TALL masks over one merged vector; ``merge`` returns θ_0 + scaling·τ_MTL.

    Args:
        lambdas: λ for every task, or a tuple with one λ per task (used without ``validate``).
        grid: candidate λ values searched per task when ``validate`` is passed to ``merge``.
        combine: how τ_MTL is computed when not given: ``"task_arithmetic"`` (Σ τ_t) or
            ``"ties"`` (per-tensor top-``ties_density`` trim, summed-sign election, disjoint mean).
        ties_density: fraction of entries TIES keeps per tensor.
        scaling: multiplies τ_MTL in the returned merged state only (not in reconstructions).
        strict: use > instead of ≥ in the mask test.
    """

    lambdas: float | tuple[float, ...] = 0.4
    grid: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6)
    combine: Literal["task_arithmetic", "ties"] = "task_arithmetic"
    ties_density: float = 0.2
    scaling: float = 1.0
    strict: bool = False

    @property
    def needs(self) -> frozenset[str]:
        return frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.lambdas, int | float):
            for lam in self.lambdas:
                check_number(lam, "lambda", _NAME)
        else:
            check_number(self.lambdas, "lambda", _NAME)
        if len(self.grid) == 0:
            raise PolytaskError(f"{_NAME}: grid of lambdas is empty")
        for lam in self.grid:
            check_number(lam, "grid lambda", _NAME)
        if self.combine not in COMBINES:
            raise PolytaskError(f"{_NAME}: combine must be one of {COMBINES}, got {self.combine!r}")
        check_number(self.ties_density, "ties_density", _NAME)
        if not 0.0 < self.ties_density <= 1.0:
            raise PolytaskError(f"{_NAME}: ties_density must be in (0, 1], got {self.ties_density}")
        check_number(self.scaling, "scaling", _NAME, low=-float("inf"))

    def build(
        self,
        base: Mapping[str, Tensor],
        finetuned: Sequence[Mapping[str, Tensor]],
        *,
        merged_vector: Mapping[str, Tensor] | None = None,
        validate: Validate | None = None,
    ) -> tuple[TallMaskSet, dict[str, Any]]:
        """Compute τ_MTL and the per-task masks; returns the packed store and selection details."""
        check_checkpoints(base, finetuned, _NAME)
        vectors = task_vectors(base, finetuned)
        if merged_vector is None:
            merged = combine_vectors(vectors, self.combine, self.ties_density, _NAME)
        else:
            merged = check_given_vector(dict(merged_vector), vectors[0], _NAME)
        details: dict[str, Any] = {
            "merged_vector_source": "given" if merged_vector else self.combine
        }
        if validate is None:
            lambdas = resolve_lambdas(self.lambdas, len(vectors), _NAME)
            masks = tall_masks(vectors, merged, lambdas, self.strict)
            details["lambda_selection"] = "fixed"
        else:
            lambdas, masks, scores = self._select(base, vectors, merged, validate)
            details["lambda_selection"] = "grid"
            details["grid"] = list(self.grid)
            details["validation_scores"] = scores
        store = TallMaskSet.from_masks(merged, masks, lambdas)
        details["mask_density"] = [density(m) for m in masks]
        return store, details

    def _select(
        self,
        base: Mapping[str, Tensor],
        vectors: list[dict[str, Tensor]],
        merged: dict[str, Tensor],
        validate: Validate,
    ) -> tuple[tuple[float, ...], list[dict[str, Tensor]], list[list[float]]]:
        lambdas, masks, scores = [], [], []
        for t, vec in enumerate(vectors):
            best: tuple[float, float, dict[str, Tensor]] | None = None
            task_scores = []
            for lam in self.grid:
                mask = tall_masks([vec], merged, [lam], self.strict)[0]
                delta = {k: merged[k] * mask[k].to(merged[k].dtype) for k in merged}
                score = float(validate(t, add_vector(base, delta)))
                task_scores.append(score)
                if best is None or score > best[0]:
                    best = (score, float(lam), mask)
            assert best is not None
            lambdas.append(best[1])
            masks.append(best[2])
            scores.append(task_scores)
        return tuple(lambdas), masks, scores

    def merge(
        self,
        base: Mapping[str, Tensor],
        finetuned: Sequence[Mapping[str, Tensor]],
        /,
        *,
        merged_vector: Mapping[str, Tensor] | None = None,
        validate: Validate | None = None,
    ) -> MergeOutcome:
        """Merged model θ_0 + scaling·τ_MTL; ``outcome.tensors`` holds τ_MTL
        (``merged_vector.<tensor>``) and the packed masks (``mask.<task>.<tensor>``), and
        ``outcome.tensor_metadata`` their header, so that the file saved from them loads with
        :meth:`TallMaskSet.load` and rebuilds every task's model on its own."""
        store, details = self.build(base, finetuned, merged_vector=merged_vector, validate=validate)
        metadata: dict[str, Any] = {
            "method": "tall_masks",
            "reference": "Wang et al. 2024, Localizing Task Information for Improved Model "
            "Merging and Compression",
            "mask_rule": "|tau_t| > lambda_t*|tau_MTL - tau_t|"
            if self.strict
            else "|tau_t| >= lambda_t*|tau_MTL - tau_t|",
            "reconstruction": "theta_0 + m_t * tau_MTL",
            "lambdas": list(store.lambdas),
            "combine": self.combine,
            "ties_density": self.ties_density if self.combine == "ties" else None,
            "ties_topk": "per_tensor" if self.combine == "ties" else None,
            "ties_conventions": TIES_CONVENTIONS if self.combine == "ties" else None,
            "scaling": self.scaling,
            "mask_packing": "numpy.packbits, row-major, big-endian bit order, uint8",
            "non_floating_tensors": "copied from base",
            "storage": store.storage(base).as_dict(),
            **details,
        }
        state = add_vector(base, store.merged_vector, self.scaling)
        return MergeOutcome(
            state=state,
            metadata=metadata,
            tensors=store.to_tensors(),
            tensor_metadata=store.header(),
        )
