"""CAGrad's dual, ``argmin_{w∈Δ} bᵀw + φ√(wᵀGw)`` (``G`` positive definite), without cvxpy.

Because ``√x = min_{s>0} x/(2s) + s/2``, the problem is ``min_s H(s)`` with
``H(s) = min_{w∈Δ} bᵀw + φ wᵀGw/(2s) + φ s/2`` jointly convex, so ``H'(s) ∝ 1 − q(s)²/s²`` with
``q(s) = ‖g_{w(s)}‖``: a bracketed 1-D root search on ``f(s) = s − q(s)``, one simplex QP
``w(s) = argmin_{w∈Δ} ½(φ/s) wᵀGw + bᵀw`` per evaluation.

Faces: on a support F (``w_j = 0`` off F) the QP's stationarity ``(φ/s) G_FF w_F + b_F = μ1``,
``1ᵀw_F = 1`` gives, with ``x_1 = G_FF⁻¹1``, ``x_b = G_FF⁻¹b_F``, ``α = 1ᵀx_1``, ``β = 1ᵀx_b``,
the affine path ``w_F(s) = x_1/α + s c``, ``c = (β x_1/α − x_b)/φ`` — one factorisation of
``G_FF`` per support, shared by every ``s`` (:class:`Faces` caches them). Along it
``q(s)² = 1/α + C s²`` with ``C = (b_Fᵀx_b − β²/α)/φ²``, so the root of ``f`` on that face is
``s_F = √(1/(α(1 − C)))`` when ``C < 1``: once the search has found the final support, one step
lands on the root exactly (safeguarded by the bracket; Illinois regula falsi otherwise).

The QP at one ``s`` is a primal–dual active-set method over the supports (exact once the
support is right; quadprog as the fallback when it does not settle).
"""

from __future__ import annotations

import numpy as np
import torch


def spd_solve(a: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``a⁻¹ rhs`` by Cholesky (half the flops of LU); LU when ``a`` is not numerically PD."""
    at = torch.from_numpy(a)
    factor, info = torch.linalg.cholesky_ex(at)
    if int(info) != 0:
        return np.linalg.solve(a, rhs)
    return torch.cholesky_solve(torch.from_numpy(rhs), factor).numpy()


class Faces:
    """``(idx, x_1/α, c, 1/α, C)`` of each support visited, computed once (one ``k×k`` solve)."""

    def __init__(self, g: np.ndarray, b: np.ndarray, phi: float) -> None:
        self.g, self.b, self.phi = g, b, phi
        self.cache: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray, float, float]] = {}

    def get(self, free: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        key = np.packbits(free).tobytes()
        if key not in self.cache:
            idx = np.nonzero(free)[0]
            b_f = self.b[idx]
            sol = spd_solve(self.g[np.ix_(idx, idx)], np.stack([np.ones(idx.shape[0]), b_f], 1))
            alpha, beta = float(sol[:, 0].sum()), float(sol[:, 1].sum())
            a = sol[:, 0] / alpha
            c = (beta * a - sol[:, 1]) / self.phi
            big_c = (float(b_f @ sol[:, 1]) - beta * beta / alpha) / self.phi**2
            self.cache[key] = (idx, a, c, 1.0 / alpha, big_c)
        return self.cache[key]

    def root(self, free: np.ndarray) -> float | None:
        """``s_F``, the root of ``f`` on this support, or None when it has none (``C ≥ 1``)."""
        _, _, _, inv_alpha, big_c = self.get(free)
        return float(np.sqrt(inv_alpha / (1.0 - big_c))) if big_c < 1.0 else None

    def qp(self, s: float, support: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(w, F)``: ``w = argmin_{w∈Δ} ½(φ/s) wᵀGw + bᵀw`` and its support F (None from the
        fallback), the active-set search started at ``support``."""
        m = self.b.shape[0]
        scale = self.phi / s
        free = np.ones(m, dtype=bool) if support is None or not support.any() else support.copy()
        for _ in range(3 * m + 10):
            idx, a, c, _, _ = self.get(free)
            w = np.zeros(m)
            w[idx] = a + s * c
            gw = scale * (self.g @ w) + self.b
            lam = gw - gw[idx[0]]  # multipliers of w ≥ 0 (μ = (φ/s)(Gw)_i + b_i on F)
            # primal–dual active-set rule: drop free w_i < 0, free active λ_i < 0
            new_free = np.where(free, w >= 0, lam < 0)
            if not new_free.any():
                new_free[np.argmin(lam)] = True
            if (new_free == free).all():
                return np.clip(w, 0.0, None), free
            free = new_free
        import quadprog  # pragma: no cover - rare: the active set did not settle

        cons = np.concatenate([np.ones((m, 1)), np.eye(m)], axis=1)
        bounds = np.concatenate([[1.0], np.zeros(m)])
        w = quadprog.solve_qp(scale * self.g, -self.b, cons, bounds, 1)[0]  # pragma: no cover
        return w, None  # pragma: no cover


def cagrad_dual(g: np.ndarray, b: np.ndarray, phi: float, tol: float = 1e-12) -> np.ndarray:
    """``argmin_{w∈Δ} bᵀw + φ√(wᵀGw)`` (``G`` positive definite)."""
    faces = Faces(g, b, phi)
    support: list[np.ndarray | None] = [None]

    def w_of(s: float) -> tuple[np.ndarray, float]:
        w, free = faces.qp(s, support[0])
        support[0] = free  # warm start of the next solve, and the face of w
        return w, float(np.sqrt(max(w @ g @ w, 0.0)))

    floor = 1e-12
    lo = 0.0
    f_lo: float | None = None  # f(lo) < 0 once known; until then the bracket's left end is 0
    hi = float(np.sqrt(np.max(np.diag(g)))) * (1 + 1e-9)
    support[0] = np.arange(b.shape[0]) == np.argmin(b)  # large s: w near the vertex argmin b
    w, q_hi = w_of(hi)
    if hi - q_hi <= 0:  # pragma: no cover - cannot happen: q(s) ≤ max_k ‖g_k‖
        return w
    f_hi, side, face_step = hi - q_hi, 0, False
    for _ in range(200):
        face = support[0]
        face_root = faces.root(face) if face is not None and not face_step else None
        face_step = face_root is not None and lo < face_root < hi
        if face_root is not None and face_step:
            s = face_root  # exact if w(s_F) keeps this support; else another step next
        elif f_lo is None:  # no point with f < 0 yet: halve towards 0
            s = hi / 2
        else:  # Illinois-modified regula falsi on f(s) = s − q(s)
            s = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        if s < floor:  # q(s) ≤ s down to 1e-12: 0 is (numerically) in the hull
            return w_of(floor)[0]
        w, qs = w_of(s)
        f = s - qs
        if abs(f) <= tol * max(1.0, s) or hi - lo <= tol * hi:
            break
        if f > 0:
            hi, f_hi = s, f
            if side == 1 and f_lo is not None:
                f_lo /= 2
            side = 1
        else:
            lo, f_lo = s, f
            if side == -1:
                f_hi /= 2
            side = -1
    return w
