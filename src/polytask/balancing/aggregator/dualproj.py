"""DualProj, Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.dual_cone import project_rows
from polytask.balancing.base import GramianWeighting, Statistics


class DualProj(GramianWeighting):
    r"""DualProj: project the mean gradient onto the dual cone of the rows,
    :math:`d = \arg\min_{v:\,Jv \ge 0} \|v - \bar g\|`; in Gramian form the QP
    :math:`\min_{u \ge \mathbf 1/m} u^\top G u`. Non-conflicting: :math:`J d \ge 0`.

    Same QP, normalisation (:math:`G/\mathrm{tr}\,G`) and regularisation (``reg_eps``·I) as
    torchjd's ``DualProjWeighting`` with its ``QuadprogProjector``; solved by the active-set
    method of :mod:`.dual_cone` (one principal subsystem per round) instead of quadprog.
    """

    non_conflicting = True

    def __init__(self, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> None:
        super().__init__()
        if norm_eps < 0 or reg_eps < 0:
            raise PolytaskError(
                f"DualProj: norm_eps and reg_eps must be >= 0, got {norm_eps}, {reg_eps}"
            )
        self.norm_eps, self.reg_eps = float(norm_eps), float(reg_eps)

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("DualProj: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu().numpy()
        m = g.shape[0]
        u = np.full((1, m), 1.0 / m)
        v = project_rows(u, g, self.norm_eps, self.reg_eps, name="DualProj")[0]
        return torch.from_numpy(v).to(stats.gramian.device, stats.gramian.dtype)
