"""UPGrad, Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.dual_cone import project_rows
from polytask.balancing.base import GramianWeighting, Statistics


class UPGrad(GramianWeighting):
    r"""UPGrad: project every task gradient onto the dual cone of the rows and average,
    :math:`d = \frac1m \sum_k \pi_{J}(g_k)` with :math:`\pi_J(g) = \arg\min_{v:\,Jv \ge 0}\|v-g\|`;
    in Gramian form each projection is the QP :math:`\min_{u \ge e_k/m} u^\top G u` and the
    weights are :math:`\sum_k u^{(k)}`. Non-conflicting: :math:`J d \ge 0`.

    Same QPs, normalisation and regularisation as torchjd's ``UPGradWeighting`` (which solves the
    m QPs one by one with quadprog); here they are solved together by an active-set method with
    batched Cholesky solves of each row's smaller subsystem (:mod:`.dual_cone`), exact to
    round-off. Cost: m QPs of size m; when each row's free and active sets are both about m/2
    (realistic Gramians) that is :math:`\Theta(m^4)` flops, inherent to the method.
    """

    non_conflicting = True

    def __init__(self, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> None:
        super().__init__()
        if norm_eps < 0 or reg_eps < 0:
            raise PolytaskError(
                f"UPGrad: norm_eps and reg_eps must be >= 0, got {norm_eps}, {reg_eps}"
            )
        self.norm_eps, self.reg_eps = float(norm_eps), float(reg_eps)

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("UPGrad: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu().numpy()
        m = g.shape[0]
        v = project_rows(np.eye(m) / m, g, self.norm_eps, self.reg_eps, name="UPGrad")
        return torch.from_numpy(v.sum(axis=0)).to(stats.gramian.device, stats.gramian.dtype)
