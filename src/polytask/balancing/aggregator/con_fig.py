"""ConFIG, Liu et al., "ConFIG: Towards Conflict-free Training of Physics Informed Neural
Networks", ICLR 2025 — Gramian form of torchjd's (Jacobian-only) ``ConFIG``."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.pinv_solve import pinv_solve
from polytask.balancing.base import GramianWeighting, Statistics


class ConFIG(GramianWeighting):
    r"""ConFIG (Eq. 2): :math:`u = \mathrm{normalize}(U^{+}\mathbf 1)` with :math:`U` the unit task
    gradients (rows), update :math:`(\mathbf 1^\top J u)\,u` — every task sees the same positive
    cosine with the update.

    Gramian form (derived here, no Jacobian needed): with :math:`D = \mathrm{diag}(\sqrt{G_{kk}})`,
    :math:`U^{+} = U^\top (U U^\top)^{+}`, so :math:`U^{+}\mathbf 1 = J^\top c_0`,
    :math:`c_0 = D^{-1} (D^{-1} G D^{-1})^{+} \mathbf 1`, and the update is :math:`J^\top w` with
    :math:`w = c_0\, (\mathbf 1^\top G c_0) / (c_0^\top G c_0)`. Zero gradients get weight 0.

    :math:`(D^{-1} G D^{-1})^{+}\mathbf 1` is a Cholesky solve when the matrix is certified
    well-conditioned (then the pseudo-inverse is the inverse), the Hermitian pseudo-inverse
    otherwise (:mod:`.pinv_solve`).
    """

    non_conflicting = True

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("ConFIG: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64)
        d = g.diagonal().clamp_min(0.0).sqrt()
        inv_d = torch.where(d > 0, 1.0 / torch.where(d > 0, d, 1.0), 0.0)
        gn = inv_d[:, None] * g * inv_d[None, :]
        c0 = inv_d * pinv_solve(gn, torch.ones_like(d), hermitian=True)
        quad = c0 @ g @ c0
        if quad <= 0:
            return torch.zeros_like(stats.gramian.diagonal())
        w = c0 * ((g @ c0).sum() / quad)
        return w.to(stats.gramian.dtype)
