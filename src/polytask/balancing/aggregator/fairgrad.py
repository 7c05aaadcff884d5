"""FairGrad, Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.alpha_fair import alpha_fair_solve
from polytask.balancing.base import GramianWeighting, Statistics


class FairGrad(GramianWeighting):
    r"""FairGrad: α-fair utility maximisation; the weights solve :math:`G w = w^{-1/\alpha}`
    (elementwise), :math:`w > 0`, and the update is :math:`J^\top w`. Then
    :math:`g_k\cdot J^\top w = w_k^{-1/\alpha} > 0` for every task. :math:`\alpha = 0` is the
    mean (:math:`w = \mathbf 1/m`); :math:`\alpha = 1` is Nash-MTL's equation.

    torchjd's ``FairGradWeighting`` (like the paper's code) runs scipy's ``least_squares`` on the
    residual; here the same root is found as the minimiser of a strictly convex function by
    damped Newton (:mod:`.alpha_fair`), on :math:`G/s` with :math:`s = \|G\|_F`, then rescaled by
    :math:`s^{-\alpha/(1+\alpha)}` (a tiny ridge ``reg_eps`` keeps singular G solvable).

    :param alpha: fairness :math:`\alpha` (1 = proportional fairness).
    """

    non_conflicting = True

    def __init__(self, alpha: float = 1.0, reg_eps: float = 1e-8) -> None:
        super().__init__()
        if alpha < 0:
            raise PolytaskError(f"FairGrad: alpha must be >= 0, got {alpha}")
        self.alpha, self.reg_eps = float(alpha), float(reg_eps)

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("FairGrad: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu()
        m = g.shape[0]
        norm = float(torch.linalg.matrix_norm(g))
        if self.alpha == 0.0 or norm == 0.0:
            return torch.full((m,), 1.0 / m, dtype=stats.gramian.dtype, device=stats.gramian.device)
        gn = (g / norm).numpy() + self.reg_eps * np.eye(m)
        w_hat = alpha_fair_solve(gn, np.ones(m), alpha=self.alpha, name="FairGrad")
        # G ŵ/s = ŵ^{-1/α}  ⇒  w = ŵ s^{-α/(1+α)} solves G w = w^{-1/α}
        w = torch.from_numpy(w_hat) * norm ** (-self.alpha / (1.0 + self.alpha))
        return w.to(device=stats.gramian.device, dtype=stats.gramian.dtype)
