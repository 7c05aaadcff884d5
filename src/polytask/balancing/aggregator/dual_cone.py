"""Batched projection onto the dual cone of the task gradients, in Gramian form (UPGrad, DualProj).

For each row ``u`` of ``U``: ``v = argmin_{v ≥ u} vᵀGv`` — the weights whose combination is the
projection of ``Jᵀu`` onto ``{d : J d ≥ 0}`` (Quinton & Rey 2024, Prop. 1). Solved for all rows at
once by a primal–dual active-set method (exact once the active set is right, typically a handful
of batched m×m solves); rows that do not settle fall back to quadprog, as torchjd does. ``G`` is
normalised by its trace and regularised by ``reg_eps·I`` exactly as in torchjd's
``QuadprogProjector``.
"""

from __future__ import annotations

import numpy as np


def project_rows(u: np.ndarray, g: np.ndarray, norm_eps: float, reg_eps: float) -> np.ndarray:
    """``[r, m]`` solutions of ``min vᵀGv s.t. v ≥ u_i`` for every row ``u_i`` of ``u``."""
    trace = float(np.trace(g))
    m = g.shape[0]
    gn = (np.zeros_like(g) if trace < norm_eps else g / trace) + reg_eps * np.eye(m)
    eye = np.eye(m)
    # start: constraint j of row i active unless row i's target conflicts with task j
    active = (u @ gn >= 0) | (u > 0)
    v = u.copy()
    for _ in range(4 * m + 10):
        mat = np.where(active[:, :, None], eye[None], gn[None])
        rhs = np.where(active, u, 0.0)
        v = np.linalg.solve(mat, rhs[:, :, None])[:, :, 0]
        lam = v @ gn  # multipliers (G v) on the active set
        new_active = lam + (u - v) > 1e-15
        if (new_active == active).all():
            break
        active = new_active
    ok = (v >= u - 1e-10).all(axis=1) & ((v @ gn) >= -1e-10).all(axis=1)
    if not ok.all():  # pragma: no cover - rare cycling: solve those rows exactly
        import quadprog

        for i in np.nonzero(~ok)[0]:
            v[i] = quadprog.solve_qp(gn, np.zeros(m), eye, u[i])[0]
    return v
