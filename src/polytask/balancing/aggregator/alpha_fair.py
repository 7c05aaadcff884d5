"""Newton solver shared by Nash-MTL (α = 1) and FairGrad: the positive solution of
``G w = w^{-1/α}``.

It is the minimiser of the strictly convex ``f(w) = ½ wᵀGw − Σ_k h(w_k)`` with
``h'(w) = w^{-1/α}`` (``h = log`` for α = 1, ``w^p/p`` with ``p = 1 − 1/α`` otherwise): damped
Newton with a backtracking line search that keeps ``w > 0``, in float64. Each step solves with
the Hessian ``G + diag(w^{-1/α-1}/α)`` (positive definite) by one Cholesky factorisation
(m³/3 flops; LU when it is not numerically positive definite). Near the solution (Newton
decrement below ``1e-10·max(1, |f|)``, where a line search can no longer tell values apart in
float64) full Newton steps are taken until the relative residual
``‖Gw − w^{-1/α}‖_∞ / ‖w^{-1/α}‖_∞`` is at round-off (``≤ 1e-12``).

No silent wrong result: if that residual is not below ``1e-8`` at the end, it raises
:class:`PolytaskError` naming the method.
"""

from __future__ import annotations

import numpy as np
import torch

from polytask._core import PolytaskError


def h_sum(w: np.ndarray, alpha: float) -> float:
    """``Σ_k h(w_k)``."""
    if alpha == 1.0:
        return float(np.log(w).sum())
    p = 1.0 - 1.0 / alpha
    return float((w**p).sum() / p)


def newton_step(hess: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``hess⁻¹ grad`` by Cholesky, LU when ``hess`` is not numerically positive definite."""
    factor, info = torch.linalg.cholesky_ex(torch.from_numpy(hess))
    if int(info) != 0:
        return np.linalg.solve(hess, grad)
    return torch.cholesky_solve(torch.from_numpy(grad)[:, None], factor)[:, 0].numpy()


def residual(g: np.ndarray, w: np.ndarray, alpha: float) -> float:
    """``‖Gw − w^{-1/α}‖_∞ / ‖w^{-1/α}‖_∞``."""
    target = w ** (-1.0 / alpha)
    return float(np.abs(g @ w - target).max() / np.abs(target).max())


def alpha_fair_solve(
    g: np.ndarray, start: np.ndarray, alpha: float = 1.0, max_iters: int = 60, name: str = ""
) -> np.ndarray:
    """Positive ``w`` with ``G w = w^{-1/α}`` (``G`` positive definite), warm-started at
    ``start``; ``name`` is the method named by the error when it does not converge."""
    w = start.copy()
    f = 0.5 * w @ g @ w - h_sum(w, alpha)
    for _ in range(max_iters):
        grad = g @ w - w ** (-1.0 / alpha)
        step = newton_step(g + np.diag(w ** (-1.0 / alpha - 1.0) / alpha), grad)
        decrement = grad @ step
        if decrement < 1e-10 * max(1.0, abs(f)):  # quadratic region: full steps
            if not (w - step > 0).all():
                break
            w = w - step
            if residual(g, w, alpha) <= 1e-12:
                return w
            continue
        pos = step > 0
        t = min(1.0, 0.99 * float(np.min(w[pos] / step[pos]))) if pos.any() else 1.0
        while t >= 1e-12:
            new = w - t * step
            f_new = 0.5 * new @ g @ new - h_sum(new, alpha)
            if f_new <= f - 0.25 * t * decrement:
                break
            t *= 0.5
        if t < 1e-12:
            break
        w, f = new, f_new
    res = residual(g, w, alpha)
    if not res <= 1e-8:
        raise PolytaskError(f"{name}: the Newton solve of G w = w^(-1/alpha) did not converge")
    return w
