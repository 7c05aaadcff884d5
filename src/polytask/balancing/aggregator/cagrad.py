"""CAGrad, Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021 —
torchjd's ``CAGradWeighting`` (needs cvxpy: extra ``nash``)."""

from __future__ import annotations

from polytask._core import PolytaskError, require
from polytask.balancing.aggregator.torchjd_weighting import (
    TorchJDGramianWeighting,
    torchjd_aggregation,
)


class CAGrad(TorchJDGramianWeighting):
    r"""CAGrad: maximise the worst task improvement within a ball around the mean gradient
    :math:`g_0`: :math:`\max_d \min_k g_k\cdot d` s.t. :math:`\|d - g_0\| \le c\|g_0\|`.
    Dual: :math:`w^\star = \arg\min_{w\in\Delta} g_w^\top g_0 + c\|g_0\|\|g_w\|`, update
    :math:`g_0 + \frac{c\|g_0\|}{\|g_{w^\star}\|} g_{w^\star}` (no :math:`1/(1+c^2)` rescale), i.e.
    :math:`w = \mathbf 1/m + \frac{c\|g_0\|}{\|g_{w^\star}\|} w^\star` on the normalised Gramian.

    :param c: radius factor :math:`c` (0.4 in the paper's experiments).
    """

    def __init__(self, c: float = 0.4, norm_eps: float = 1e-4) -> None:
        if c < 0:
            raise PolytaskError(f"CAGrad: c must be >= 0, got {c}")
        require("cvxpy", extra="nash")
        super().__init__(torchjd_aggregation().CAGradWeighting(c=c, norm_eps=norm_eps))
