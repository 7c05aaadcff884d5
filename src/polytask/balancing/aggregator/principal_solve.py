"""Batched solves of principal subsystems ``A[S_r, S_r] x = b_r[S_r]`` of one SPD matrix ``A``,
a different index set ``S_r`` per row — the inner step of the active-set solvers
(:mod:`.dual_cone`).

Rows are grouped by set size; each chunk of rows with the same size ``s`` gathers its
submatrices into one ``[c, s, s]`` tensor (``c`` bounded by ``budget_bytes``) and solves them with
one batched Cholesky factorisation: ``Σ_r |S_r|³/3`` flops, no ``[r, m, m]`` temporary.

``mixed=True`` (mixed-precision iterative refinement, as LAPACK's ``dsposv``): the gather and the
factorisation run in float32 (about half the time of float64), and the float64 answer is
recovered by refinement — ``x ← x + L⁻ᵀL⁻¹(b − A_SS x)`` with the residual in float64 (through
one ``[c, m] × [m, m]`` product, no float64 submatrix), until
``‖b − A_SS x‖_∞ ≤ 4·eps₆₄·(‖A_SS‖_∞‖x‖_∞ + ‖b‖_∞)`` (backward-stable float64 accuracy). Rows
whose float32 factorisation fails or whose refinement does not reach that bound within
``REFINE_STEPS`` (``cond(A_SS)`` too large for float32) are solved again in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

BUDGET_BYTES = 64 * 2**20
REFINE_STEPS = 8


def gather(a: Tensor, idx: Tensor) -> Tensor:
    """``[c, s, s]``: ``a[idx[k]][:, idx[k]]`` for each row ``k`` of ``idx``."""
    c, s = idx.shape
    sub = torch.empty(c, s, s, dtype=a.dtype)
    for k in range(c):  # two index_selects: faster than one 2-D gather
        torch.index_select(torch.index_select(a, 0, idx[k]), 1, idx[k], out=sub[k])
    return sub


def cholesky_solve(factor: Tensor, b: Tensor) -> Tensor:
    """``[c, s]`` solutions of ``L Lᵀ x = b`` (batched, two triangular solves)."""
    y = torch.linalg.solve_triangular(factor, b[:, :, None], upper=False)
    return torch.linalg.solve_triangular(factor.mT, y, upper=True)[:, :, 0]


def solve_double(a: Tensor, idx: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    factor, info = torch.linalg.cholesky_ex(gather(a, idx))
    return cholesky_solve(factor, b), info == 0


def solve_refined(a: Tensor, a32: Tensor, idx: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Float32 factorisation, float64 answer by iterative refinement; ``ok`` False where it did
    not reach float64 accuracy."""
    c, m = idx.shape[0], a.shape[0]
    sub = gather(a32, idx)
    a_norm = sub.abs().sum(dim=2).amax(dim=1).to(a.dtype)  # ‖A_SS‖_∞
    factor, info = torch.linalg.cholesky_ex(sub)
    good = info == 0
    factor = torch.where(good[:, None, None], factor, torch.eye(idx.shape[1], dtype=a32.dtype))
    x = cholesky_solve(factor, b.to(a32.dtype)).to(a.dtype)
    done = torch.zeros(c, dtype=torch.bool)
    for _ in range(REFINE_STEPS):
        full = torch.zeros(c, m, dtype=a.dtype).scatter_(1, idx, x)
        r = b - (full @ a).gather(1, idx)
        bound = 4 * torch.finfo(a.dtype).eps * (a_norm * x.abs().amax(1) + b.abs().amax(1))
        done = good & (r.abs().amax(1) <= bound)
        if bool(done[good].all()):
            break
        x = x + cholesky_solve(factor, r.to(a32.dtype)).to(a.dtype)
    return x, done


def principal_solve(
    a: Tensor, sets: Tensor, rhs: Tensor, budget_bytes: int = BUDGET_BYTES, mixed: bool = False
) -> tuple[Tensor, Tensor]:
    """``(x, ok)``: ``x[r]`` solves ``a[S_r, S_r] x[r, S_r] = rhs[r, S_r]`` and is 0 outside
    ``S_r = sets[r]`` (``[r, m]`` bool); ``ok[r]`` is False where the Cholesky factorisation
    failed (the submatrix is not numerically positive definite; ``x[r]`` is then 0)."""
    r, m = sets.shape
    out = torch.zeros(r, m, dtype=a.dtype)
    ok = torch.ones(r, dtype=torch.bool)
    a32 = a.to(torch.float32) if mixed else a
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
        b = rhs[rows].gather(1, idx)
        if mixed:
            x, good = solve_refined(a, a32, idx, b)
            if not bool(good.all()):  # cond too large for float32: those rows in float64
                x[~good], good[~good] = solve_double(a, idx[~good], b[~good])
        else:
            x, good = solve_double(a, idx, b)
        out[rows] = torch.zeros(rows.shape[0], m, dtype=a.dtype).scatter_(
            1, idx, torch.where(good[:, None], x, 0.0)
        )
        ok[rows] = good
    return out, ok
