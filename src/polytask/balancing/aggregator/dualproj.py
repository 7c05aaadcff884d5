"""DualProj, Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024 — torchjd."""

from __future__ import annotations

from polytask.balancing.aggregator.torchjd_weighting import (
    TorchJDGramianWeighting,
    torchjd_aggregation,
)


class DualProj(TorchJDGramianWeighting):
    r"""DualProj: project the mean gradient onto the dual cone of the rows,
    :math:`d = \arg\min_{v:\,Jv \ge 0} \|v - \bar g\|`; in Gramian form the QP
    :math:`\min_{u \ge \mathbf 1/m} u^\top G u`. Non-conflicting: :math:`J d \ge 0`.
    """

    non_conflicting = True

    def __init__(self, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> None:
        from torchjd.linalg import QuadprogProjector

        proj = QuadprogProjector(norm_eps=norm_eps, reg_eps=reg_eps)
        super().__init__(torchjd_aggregation().DualProjWeighting(projector=proj))
