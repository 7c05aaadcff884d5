"""Uncertainty weighting (UW), Kendall, Gal & Cipolla, CVPR 2018."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.balancing.base import LossWeighting, Statistics, task_rows


class UW(LossWeighting):
    r"""Uncertainty weighting with learnable log-variances :math:`s_k = \log \sigma_k^2`.

    Objective (Kendall et al. 2018, Eq. 7 in the regression form):
    :math:`\sum_k \tfrac12 e^{-s_k} L_k + \tfrac12 s_k`, so :math:`w_k = \tfrac12 e^{-s_k}` and the
    regularizer is :math:`\tfrac12 \sum_k s_k`. The ``s_k`` are ``nn.Parameter`` s: give
    ``Balancer.parameters()`` to the optimizer.

    Absent tasks (no label in the batch) get no weight and no regularizer term: their
    :math:`s_k` receive no gradient that step.

    :param n_tasks: number of tasks m (the parameters must exist before the optimizer does).
    :param init: initial value of every :math:`s_k`.
    """

    def __init__(self, n_tasks: int, init: float = 0.0) -> None:
        super().__init__()
        if n_tasks < 2:
            raise PolytaskError(f"UW: n_tasks must be >= 2, got {n_tasks}")
        self.log_vars = nn.Parameter(torch.full((n_tasks,), float(init)))

    def weights(self, stats: Statistics) -> Tensor:
        if stats.n_total != self.log_vars.shape[0]:
            raise PolytaskError(
                f"UW: built for {self.log_vars.shape[0]} tasks, got {stats.n_total} losses"
            )
        return 0.5 * torch.exp(-self.log_vars[task_rows(stats)])

    def regularizer(self, stats: Statistics | None = None) -> Tensor:
        s = self.log_vars if stats is None else self.log_vars[task_rows(stats)]
        return 0.5 * s.sum()
