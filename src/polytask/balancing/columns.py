"""Declared column ownership of a stacked head (``features`` mode's cheapest path).

When the shared features ``Z`` reach the losses through ONE linear map ``Y = Z Aᵀ + b`` (one stacked
head, :class:`~polytask.models.LinearHeads`) and task ``k``'s loss reads only the columns ``S_k`` of
``Y``, the caller may declare ``columns = [S_1, …, S_m]``. Then ``R_k = ∂L_k/∂Y = R_Σ diag(P_k)``
with ``R_Σ = ∂(Σ_k L_k)/∂Y`` and ``P`` the ``[m, H]`` 0/1 indicator of the ``S_k``, so every
per-task statistic comes from ONE ordinary backward of ``Σ_k L_k`` through the loss ops:

* Gramian: ``G = P ((R_Σᵀ R_Σ) ⊙ A Aᵀ) Pᵀ`` (reduced by owner index, :class:`Owners`);
* feature-gradient norms (GradNorm): ``‖∂L_k/∂Z‖² = G_kk``;
* combined feature gradient: ``Σ_k w_k ∂L_k/∂Z = (R_Σ diag(Pᵀ w)) A``.

The declaration is trusted (it is what the head's construction guarantees); columns that no task
declares contribute nothing. Undeclared, the per-task ``R_k`` are measured by a batched backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.task_gradients import Owners

Columns = Sequence[int | slice | range | Sequence[int]]
"""One entry per task: a column index, a slice/range, or a sequence of indices."""


def _entry(entry: object, k: int) -> tuple[object, ...]:
    """A hashable form of one task's entry: ``("slice", start, stop, step)`` or the indices."""
    if isinstance(entry, slice):
        return ("slice", entry.start, entry.stop, entry.step)
    if isinstance(entry, int) and not isinstance(entry, bool):
        return (entry,)
    if isinstance(entry, range | Sequence) and not isinstance(entry, str | bytes):
        return tuple(entry)
    raise PolytaskError(f"balancing: columns[{k}] must be column indices, got {entry!r}")


def _indices(entry: tuple[object, ...], k: int, h: int) -> list[int]:
    if entry[:1] == ("slice",):
        return list(range(*slice(*entry[1:]).indices(h)))
    out = []
    for i in entry:
        if isinstance(i, bool) or not isinstance(i, int):
            raise PolytaskError(f"balancing: columns[{k}] holds {i!r}, not a column index")
        if not -h <= i < h:
            raise PolytaskError(
                f"balancing: columns[{k}] holds column {i}, outside the head output's {h} columns"
            )
        out.append(i % h)
    return out


@lru_cache(maxsize=32)
def _owners(key: tuple[tuple[object, ...], ...], h: int, device: torch.device) -> Owners:
    owner: dict[int, int] = {}
    for k, entry in enumerate(key):
        for i in _indices(entry, k, h):
            if owner.setdefault(i, k) != k:
                raise PolytaskError(
                    f"balancing: columns[{owner[i]}] and columns[{k}] both hold column {i}; "
                    "declared columns must be disjoint"
                )
    cols = sorted(owner)
    return Owners(
        torch.tensor(cols, dtype=torch.int64, device=device),
        torch.tensor([owner[c] for c in cols], dtype=torch.int64, device=device),
        len(key),
    )


@lru_cache(maxsize=32)
def _owners_hashable(columns: tuple[object, ...], h: int, device: torch.device) -> Owners:
    return _owners(tuple(_entry(c, k) for k, c in enumerate(columns)), h, device)


def declared_owners(columns: Columns, m: int, h: int, device: torch.device) -> Owners:
    """The owner of every declared column (validated, cached): ``Owners(cols, task, m)``."""
    if isinstance(columns, str | bytes) or not isinstance(columns, Sequence):
        raise PolytaskError(
            f"balancing: `columns` must be one entry of column indices per task, got {columns!r}"
        )
    if len(columns) != m:
        raise PolytaskError(f"balancing: `columns` has {len(columns)} entries for {m} task losses")
    try:  # ints and ranges (what the trainer passes) hash as they are
        return _owners_hashable(tuple(columns), h, device)
    except TypeError:
        pass
    key = tuple(_entry(c, k) for k, c in enumerate(columns))
    try:
        return _owners(key, h, device)
    except TypeError:  # unhashable items inside an entry
        raise PolytaskError(
            f"balancing: `columns` must be one entry of column indices per task, got {columns!r}"
        ) from None


def owner_matrix(
    columns: Columns, m: int, h: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``P [m, h]``: ``P[k, i] = 1`` iff task ``k`` declares column ``i`` (dense; for tests and
    small problems — the balancing code reduces by owner index instead)."""
    owners = declared_owners(columns, m, h, device)
    p = torch.zeros(m, h, dtype=dtype, device=device)
    p[owners.task, owners.cols] = 1
    return p


def present_owners(owners: Owners, index: Tensor | None) -> Owners:
    """The owned columns of the present tasks ``index`` (renumbered ``0..m_p-1``)."""
    if index is None:
        return owners
    index = index.to(owners.task.device)
    pos = torch.full((owners.m,), -1, dtype=torch.int64, device=owners.task.device)
    pos[index] = torch.arange(index.numel(), device=index.device)
    new = pos[owners.task]
    keep = new >= 0
    return Owners(owners.cols[keep], new[keep], int(index.numel()))
