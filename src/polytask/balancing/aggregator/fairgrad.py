"""FairGrad, Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024 — torchjd's
``FairGradWeighting`` (needs scipy)."""

from __future__ import annotations

from polytask._core import PolytaskError, require
from polytask.balancing.aggregator.torchjd_weighting import (
    TorchJDGramianWeighting,
    torchjd_aggregation,
)


class FairGrad(TorchJDGramianWeighting):
    r"""FairGrad: α-fair utility maximisation; the weights solve :math:`G w = w^{-1/\alpha}`
    (elementwise), :math:`w > 0`, by non-negative least squares. Then
    :math:`g_k\cdot J^\top w = w_k^{-1/\alpha} > 0` for every task. :math:`\alpha = 0` is EW/m.

    :param alpha: fairness :math:`\alpha` (1 = proportional fairness).
    """

    non_conflicting = True

    def __init__(self, alpha: float = 1.0, max_iters: int | None = None) -> None:
        if alpha < 0:
            raise PolytaskError(f"FairGrad: alpha must be >= 0, got {alpha}")
        require("scipy", extra="nash")
        super().__init__(torchjd_aggregation().FairGradWeighting(alpha=alpha, max_iters=max_iters))
