"""Dual-balancing multi-task learning (DB-MTL), Lin et al., arXiv:2308.12029, 2023."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import JacobianAggregator, Statistics


class DBMTL(JacobianAggregator):
    r"""DB-MTL: balance loss scales with a log transform and gradient magnitudes to the largest.

    Loss scale: task gradients of :math:`\log(L_k + \epsilon)`, i.e.
    :math:`\tilde g_k = g_k / (L_k + \epsilon)`. Gradient magnitude (Algorithm 1): an EMA
    :math:`\hat g_k \leftarrow \tilde g_k + \beta_t(\hat g_k - \tilde g_k)` with
    :math:`\beta_t = \beta / t^{\sigma}`, then
    :math:`\alpha_k = \max_i \|\hat g_i\| / \|\hat g_k\|` and the update
    :math:`\sum_k \alpha_k \hat g_k`. Reported weights: :math:`\alpha_k / (L_k + \epsilon)`; with
    :math:`\beta = 0` the update is exactly that weighting of the raw :math:`g_k`.

    Needs the Jacobian and keeps its EMA (an ``[m, n]`` buffer, updated in place as
    :math:`\beta_t \hat g + (1-\beta_t)\tilde g`), so ``exact`` mode only: feature gradients of
    different batches cannot be averaged (LibMTL refuses ``rep_grad`` for DB-MTL too).

    :param beta: :math:`\beta` (0.9). :param beta_sigma: :math:`\sigma` (0.5).
    """

    needs = frozenset({"losses", "jacobian"})
    modes = frozenset({"exact"})
    ema: Tensor
    count: Tensor

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.5, eps: float = 1e-8) -> None:
        super().__init__()
        if not 0.0 <= beta < 1.0:
            raise PolytaskError(f"DBMTL: beta must be in [0, 1), got {beta}")
        self.beta, self.beta_sigma, self.eps = float(beta), float(beta_sigma), float(eps)
        self.register_buffer("ema", torch.zeros(0))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def aggregate(self, stats: Statistics) -> tuple[Tensor, Tensor]:
        jac = stats.jacobian
        if jac is None:
            raise PolytaskError("DBMTL: the statistic has no Jacobian")
        scale = 1.0 / (stats.losses.detach().to(jac.dtype) + self.eps)
        if tuple(self.ema.shape) != tuple(jac.shape):
            self.ema = torch.zeros_like(jac)
            self.count.zero_()
        self.count += 1
        b = self.beta / float(self.count) ** self.beta_sigma
        # ĝ ← g̃ + β_t(ĝ − g̃) = β_t ĝ + (1 − β_t) g̃, in place: two passes, no [m, n] temporary
        self.ema.mul_(b).addcmul_(jac, ((1.0 - b) * scale)[:, None])
        norms = self.ema.norm(dim=1)
        alpha = norms.max() / (norms + 1e-8)
        return alpha @ self.ema, alpha * scale
