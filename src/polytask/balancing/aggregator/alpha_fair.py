"""Newton solver shared by Nash-MTL (α = 1) and FairGrad: the positive solution of
``G w = w^{-1/α}``.

It is the minimiser of the strictly convex ``½ wᵀGw − Σ_k h(w_k)`` with ``h' (w) = w^{-1/α}``
(``h = log`` for α = 1, ``w^{1-1/α}/(1-1/α)`` otherwise): damped Newton with a backtracking line
search that keeps ``w > 0``, in float64 — a few m×m solves, no external solver.
"""

from __future__ import annotations

import numpy as np


def _h(w: np.ndarray, alpha: float) -> float:
    if alpha == 1.0:
        return float(np.log(w).sum())
    p = 1.0 - 1.0 / alpha
    return float((w**p).sum() / p)


def alpha_fair_solve(
    g: np.ndarray, start: np.ndarray, alpha: float = 1.0, max_iters: int = 60
) -> np.ndarray:
    """Positive ``w`` with ``G w = w^{-1/α}`` (``G`` positive definite), warm-started at ``start``.

    Near the solution (Newton decrement below ``1e-10·max(1, |f|)``, where a line search can no
    longer tell values apart in float64) one full Newton step is taken and the loop stops:
    quadratic convergence puts the residual at round-off level.
    """
    w = start.copy()
    f = 0.5 * w @ g @ w - _h(w, alpha)
    for _ in range(max_iters):
        grad = g @ w - w ** (-1.0 / alpha)
        hess = g + np.diag(w ** (-1.0 / alpha - 1.0) / alpha)
        step = np.linalg.solve(hess, grad)
        decrement = grad @ step
        if decrement < 1e-10 * max(1.0, abs(f)):
            last = w - step
            return last if (last > 0).all() else w
        pos = step > 0
        t = min(1.0, 0.99 * float(np.min(w[pos] / step[pos]))) if pos.any() else 1.0
        while True:
            new = w - t * step
            f_new = 0.5 * new @ g @ new - _h(new, alpha)
            if f_new <= f - 0.25 * t * decrement:
                break
            t *= 0.5
            if t < 1e-12:
                return w
        w, f = new, f_new
    return w
