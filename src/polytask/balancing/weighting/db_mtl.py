"""Dual-balancing multi-task learning (DB-MTL), Lin et al., arXiv:2308.12029, 2023."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import JacobianAggregator, Statistics, lazy_buffer, task_rows


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

    Absent tasks: the EMA rows, the step counts :math:`t` and the max run over the present tasks;
    an absent task's EMA row is left as it was (not decayed) and its count not advanced; the
    update is :math:`\sum_{k \in P} \alpha_k \hat g_k`.

    :param beta: :math:`\beta` (0.9). :param beta_sigma: :math:`\sigma` (0.5).
    """

    needs = frozenset({"losses", "jacobian"})
    modes = frozenset({"exact"})
    ema: Tensor
    count: Tensor
    counts: Tensor

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.5, eps: float = 1e-8) -> None:
        super().__init__()
        if not 0.0 <= beta < 1.0:
            raise PolytaskError(f"DBMTL: beta must be in [0, 1), got {beta}")
        self.beta, self.beta_sigma, self.eps = float(beta), float(beta_sigma), float(eps)
        self.register_buffer("ema", torch.zeros(0))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("counts", torch.zeros(0, dtype=torch.float64))

    def aggregate(self, stats: Statistics) -> tuple[Tensor, Tensor]:
        jac = stats.jacobian
        if jac is None:
            raise PolytaskError("DBMTL: the statistic has no Jacobian")
        scale = 1.0 / (stats.losses.detach().to(jac.dtype) + self.eps)
        shape = (stats.n_total, int(jac.shape[1]))
        if tuple(self.ema.shape) != shape:
            self.ema = jac.new_zeros(shape)
            self.count.zero_()
        self.count += 1
        counts = lazy_buffer(self, "counts", (stats.n_total,), device=jac.device)
        rows = task_rows(stats)
        t = counts[rows] + 1
        counts[rows] = t
        b = (self.beta / t**self.beta_sigma).to(jac.dtype)[:, None]
        if stats.index is None:  # ĝ ← β_t ĝ + (1 − β_t) g̃ in place: no [m, n] temporary
            ema = self.ema.mul_(b).addcmul_(jac, (1.0 - b) * scale[:, None])
        else:  # the present rows only
            ema = self.ema[rows] * b + jac * ((1.0 - b) * scale[:, None])
            self.ema[rows] = ema
        norms = ema.norm(dim=1)
        alpha = norms.max() / (norms + 1e-8)
        return alpha @ ema, alpha * scale
