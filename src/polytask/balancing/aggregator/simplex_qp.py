"""Small solvers on the probability simplex, for CAGrad's dual.

``simplex_qp``: ``argmin_{w ≥ 0, Σw = 1} ½wᵀPw + qᵀw`` by a primal–dual active-set method
(exact once the support is right; quadprog as the fallback).
``cagrad_dual``: ``argmin_{w∈Δ} bᵀw + φ√(wᵀGw)``. Because ``√x = min_{s>0} x/(2s) + s/2``, it
is ``min_s H(s)`` with ``H(s) = min_{w∈Δ} bᵀw + φ wᵀGw/(2s) + φ s/2`` jointly convex, so
``H'(s) ∝ 1 − q(s)²/s²`` with ``q(s) = ‖g_{w(s)}‖``: a bracketed 1-D root search on
``s − q(s)``, one simplex QP per evaluation.
"""

from __future__ import annotations

import numpy as np


def simplex_qp(p: np.ndarray, q: np.ndarray, support: np.ndarray | None = None) -> np.ndarray:
    """``argmin ½wᵀPw + qᵀw`` over the simplex (``P`` positive definite)."""
    m = q.shape[0]
    free = np.ones(m, dtype=bool) if support is None or not support.any() else support.copy()
    for _ in range(3 * m + 10):
        idx = np.nonzero(free)[0]
        k = idx.shape[0]
        kkt = np.zeros((k + 1, k + 1))
        kkt[:k, :k] = p[np.ix_(idx, idx)]
        kkt[:k, k] = -1.0
        kkt[k, :k] = 1.0
        rhs = np.concatenate([-q[idx], [1.0]])
        sol = np.linalg.solve(kkt, rhs)
        w = np.zeros(m)
        w[idx] = sol[:k]
        mu = sol[k]
        lam = p @ w + q - mu  # multipliers of w ≥ 0 (zero on the free set)
        # primal–dual active-set rule: drop free w_i < 0, free active λ_i < 0
        new_free = np.where(free, w >= 0, lam < 0)
        if not new_free.any():
            new_free[np.argmin(lam)] = True
        if (new_free == free).all():
            return np.clip(w, 0.0, None)
        free = new_free
    import quadprog  # pragma: no cover - rare: the active set did not settle

    cons = np.concatenate([np.ones((m, 1)), np.eye(m)], axis=1)
    bounds = np.concatenate([[1.0], np.zeros(m)])
    return quadprog.solve_qp(p, -q, cons, bounds, 1)[0]  # pragma: no cover


def cagrad_dual(g: np.ndarray, b: np.ndarray, phi: float, tol: float = 1e-12) -> np.ndarray:
    """``argmin_{w∈Δ} bᵀw + φ√(wᵀGw)`` (``G`` positive definite)."""

    support: list[np.ndarray | None] = [None]

    def w_of(s: float) -> tuple[np.ndarray, float]:
        w = simplex_qp((phi / s) * g, b, support[0])
        support[0] = w > 0  # warm start of the next solve
        return w, float(np.sqrt(max(w @ g @ w, 0.0)))

    lo = 1e-12
    hi = float(np.sqrt(np.max(np.diag(g)))) * (1 + 1e-9)
    w_hi, q_hi = w_of(hi)
    if hi - q_hi <= 0:  # pragma: no cover - cannot happen: q(s) ≤ max_k ‖g_k‖
        return w_hi
    f_lo = lo - w_of(lo)[1]
    f_hi = hi - q_hi
    if f_lo >= 0:
        return w_of(lo)[0]
    w = w_hi
    side = 0
    for _ in range(100):  # Illinois-modified regula falsi on f(s) = s − q(s)
        s = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        w, qs = w_of(s)
        f = s - qs
        if abs(f) <= tol * max(1.0, s) or hi - lo <= tol * hi:
            break
        if f > 0:
            hi, f_hi = s, f
            if side == 1:
                f_lo /= 2
            side = 1
        else:
            lo, f_lo = s, f
            if side == -1:
                f_hi /= 2
            side = -1
    return w
