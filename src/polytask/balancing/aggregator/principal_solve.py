"""Batched solves of principal subsystems ``A[S_r, S_r] x = b_r[S_r]`` of one SPD matrix ``A``,
a different index set ``S_r`` per row — the inner step of the active-set solvers
(:mod:`.dual_cone`).

Rows are grouped by set size; each chunk of rows with the same size ``s`` gathers its
submatrices into one ``[c, s, s]`` tensor (``c`` bounded by ``budget_bytes``) and solves them with
one batched Cholesky factorisation: ``Σ_r |S_r|³/3`` flops, no ``[r, m, m]`` temporary.
"""

from __future__ import annotations

import torch
from torch import Tensor

BUDGET_BYTES = 64 * 2**20


def principal_solve(
    a: Tensor, sets: Tensor, rhs: Tensor, budget_bytes: int = BUDGET_BYTES
) -> tuple[Tensor, Tensor]:
    """``(x, ok)``: ``x[r]`` solves ``a[S_r, S_r] x[r, S_r] = rhs[r, S_r]`` and is 0 outside
    ``S_r = sets[r]`` (``[r, m]`` bool); ``ok[r]`` is False where the Cholesky factorisation
    failed (the submatrix is not numerically positive definite; ``x[r]`` is then 0)."""
    r, m = sets.shape
    out = torch.zeros(r, m, dtype=a.dtype)
    ok = torch.ones(r, dtype=torch.bool)
    sizes = sets.sum(dim=1)
    by_size = torch.argsort(sizes)
    sorted_sizes = sizes[by_size]
    start = int(torch.searchsorted(sorted_sizes, 1))  # empty sets: x = 0
    while start < r:
        s = int(sorted_sizes[start])
        end = int(torch.searchsorted(sorted_sizes, s, right=True))  # rows of this size
        end = min(end, start + max(1, budget_bytes // (8 * s * s)))
        rows = by_size[start:end]
        start = end
        idx = torch.nonzero(sets[rows])[:, 1].view(-1, s)  # each row's set, increasing
        sub = torch.empty(rows.shape[0], s, s, dtype=a.dtype)
        for k in range(rows.shape[0]):  # two index_selects: faster than one 2-D gather
            torch.index_select(torch.index_select(a, 0, idx[k]), 1, idx[k], out=sub[k])
        factor, info = torch.linalg.cholesky_ex(sub)
        b = rhs[rows].gather(1, idx)[:, :, None]
        y = torch.linalg.solve_triangular(factor, b, upper=False)
        x = torch.linalg.solve_triangular(factor.mT, y, upper=True)[:, :, 0]
        good = info == 0
        out[rows] = torch.zeros(rows.shape[0], m, dtype=a.dtype).scatter_(
            1, idx, torch.where(good[:, None], x, 0.0)
        )
        ok[rows] = good
    return out, ok
