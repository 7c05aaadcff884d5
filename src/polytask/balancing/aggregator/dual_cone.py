"""Projection onto the dual cone of the task gradients, in Gramian form (UPGrad, DualProj).

For each row ``u`` of ``U``: ``v = argmin_{v ≥ u} vᵀGv`` — the weights whose combination is the
projection of ``Jᵀu`` onto ``{d : J d ≥ 0}`` (Quinton & Rey 2024, Prop. 1). ``G`` is normalised
by its trace and regularised by ``reg_eps·I`` exactly as in torchjd's ``QuadprogProjector``.

Solved for all rows together by a primal–dual active-set method. KKT: ``Gv = λ ≥ 0``,
``v ≥ u``, ``λ_j (v_j − u_j) = 0``. Given the active set A (``v_A = u_A``) and the free set F
(``λ_F = 0``), each row's solution is one principal subsystem, whichever side is smaller:

* ``G_FF v_F = −G_FA u_A`` (size |F|), or
* with ``H = G⁻¹`` (computed once): ``H_AA λ_A = u_A``, ``v = H_{:,A} λ_A`` (size |A|),

solved in chunks by :func:`.principal_solve.principal_solve` (batched Cholesky, memory bounded,
no ``[m, m, m]`` temporary; float32 factorisations refined to float64 accuracy, float64 where
that does not converge). Then ``A ← {j : λ_j + u_j − v_j > 0}``; rows whose active set did
not change are done and leave the batch. Work: ``Σ_rows min(|F|, |A|)³/3`` per round — for UPGrad
(m rows of size m) this is inherently ``Θ(m⁴)`` when a row's sets are both ~m/2.

No silent wrong result: every row's answer is checked against the KKT conditions; a row that
fails (the active set cycled, or a subsystem was not positive definite) is re-solved exactly by
quadprog, as torchjd does, and a row quadprog cannot solve raises :class:`PolytaskError`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.principal_solve import principal_solve


def normalized_gramian(g: Tensor, norm_eps: float, reg_eps: float) -> Tensor:
    """``G / tr G + reg_eps·I`` (``0 + reg_eps·I`` when ``tr G < norm_eps``), as torchjd."""
    trace = float(g.diagonal().sum())
    eye = torch.eye(g.shape[0], dtype=g.dtype)
    return (torch.zeros_like(g) if trace < norm_eps else g / trace) + reg_eps * eye


class Inverse:
    """``gn⁻¹``, computed on first use (None when ``gn`` is not numerically positive definite)."""

    def __init__(self, gn: Tensor) -> None:
        self.gn, self.done = gn, False
        self.value: Tensor | None = None

    def get(self) -> Tensor | None:
        if not self.done:
            factor, info = torch.linalg.cholesky_ex(self.gn)
            self.value = torch.cholesky_inverse(factor) if int(info) == 0 else None
            self.done = True
        return self.value


def solve_given_active(
    u: Tensor, active: Tensor, gn: Tensor, inverse: Inverse | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(v, λ, ok)`` of ``min vᵀ gn v`` s.t. ``v_A = u_A`` (rows of ``active``), ``λ_F = 0``;
    each row by the smaller of its two subsystems (the ``|A|`` one with ``gn⁻¹``, when
    ``inverse`` is given and ``gn`` is positive definite)."""
    free = ~active
    use_h = active.sum(dim=1) < free.sum(dim=1)
    h = inverse.get() if inverse is not None and bool(use_h.any()) else None
    if h is None:
        use_h = torch.zeros_like(use_h)
    v, lam = torch.empty_like(u), torch.empty_like(u)
    ok = torch.ones(u.shape[0], dtype=torch.bool)
    on_g = ~use_h
    if on_g.any():
        u_a = torch.where(active[on_g], u[on_g], 0.0)
        z, good = principal_solve(gn, free[on_g], -(u_a @ gn), mixed=True)
        v[on_g] = u_a + z
        lam[on_g] = v[on_g] @ gn
        ok[on_g] = good
    if h is not None and use_h.any():
        lam_a, good = principal_solve(h, active[use_h], u[use_h], mixed=True)
        lam[use_h] = lam_a
        v[use_h] = lam_a @ h
        ok[use_h] = good
    return v, lam, ok


def kkt_holds(u: Tensor, v: Tensor, gn: Tensor, rel_tol: float = 1e-9) -> Tensor:
    """``[r]``: ``v ≥ u``, ``λ = Gv ≥ 0`` and ``min(v − u, λ) = 0`` hold to ``rel_tol``."""
    lam = v @ gn
    scale = u.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny)
    tol_v = rel_tol * scale
    tol_l = rel_tol * scale * float(gn.abs().max())
    slack = v - u
    complementary = (slack <= tol_v) | (lam <= tol_l)
    return ((slack >= -tol_v) & (lam >= -tol_l) & complementary).all(dim=1)


def project_rows(
    u: np.ndarray,
    g: np.ndarray,
    norm_eps: float,
    reg_eps: float,
    name: str = "dual-cone projection",
    max_rounds: int = 50,
) -> np.ndarray:
    """``[r, m]`` solutions of ``min vᵀGv s.t. v ≥ u_i`` for every row ``u_i`` of ``u``."""
    ut = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float64))
    gn = normalized_gramian(torch.from_numpy(np.asarray(g, dtype=np.float64)), norm_eps, reg_eps)
    inverse = Inverse(gn)
    # start: constraint j of row i active unless row i's target conflicts with task j
    active = (ut @ gn >= 0) | (ut > 0)
    v = ut.clone()
    todo = torch.arange(ut.shape[0])
    for _ in range(max_rounds):
        v_t, lam_t, ok = solve_given_active(ut[todo], active[todo], gn, inverse)
        v[todo] = v_t
        new_active = lam_t + (ut[todo] - v_t) > 1e-15
        settled = (new_active == active[todo]).all(dim=1) | ~ok
        active[todo] = new_active
        todo = todo[~settled]
        if todo.numel() == 0:
            break
    out = v.numpy()
    bad = torch.nonzero(~kkt_holds(ut, v, gn)).flatten().tolist()
    if bad:  # rare: cycling or a subsystem that is not positive definite
        import quadprog

        gq, eye = gn.numpy(), np.eye(gn.shape[0])
        for i in bad:
            try:
                out[i] = quadprog.solve_qp(gq, np.zeros(gq.shape[0]), eye, u[i])[0]
            except ValueError as err:
                raise PolytaskError(f"{name}: the projection QP has no solution ({err})") from err
    return out
