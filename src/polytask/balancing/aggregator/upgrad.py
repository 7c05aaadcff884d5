"""UPGrad, Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 — torchjd."""

from __future__ import annotations

from polytask.balancing.aggregator.torchjd_weighting import (
    TorchJDGramianWeighting,
    torchjd_aggregation,
)


class UPGrad(TorchJDGramianWeighting):
    r"""UPGrad: project every task gradient onto the dual cone of the rows and average,
    :math:`d = \frac1m \sum_k \pi_{J}(g_k)` with :math:`\pi_J(g) = \arg\min_{v:\,Jv \ge 0}\|v-g\|`;
    in Gramian form each projection is the QP :math:`\min_{u \ge e_k} u^\top G u` (weights
    :math:`\sum_k u_k / m`). Non-conflicting: :math:`J d \ge 0`.
    """

    non_conflicting = True

    def __init__(self, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> None:
        from torchjd.linalg import QuadprogProjector

        proj = QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps)
        super().__init__(torchjd_aggregation().UPGradWeighting(projector=proj))
