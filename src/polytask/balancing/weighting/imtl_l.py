"""IMTL-L, the loss-balancing half of Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.balancing.base import LossWeighting, Statistics, task_rows


class IMTLL(LossWeighting):
    r"""IMTL-L: learnable scales :math:`s_k`, objective :math:`\sum_k e^{s_k} L_k - s_k`.

    So :math:`w_k = e^{s_k}` and the regularizer is :math:`-\sum_k s_k`; at the optimum of
    :math:`s_k` the scaled losses :math:`e^{s_k} L_k` all equal 1. The :math:`s_k` are
    ``nn.Parameter`` s: give ``Balancer.parameters()`` to the optimizer.

    Absent tasks (no label in the batch) get no weight and no regularizer term.

    :param n_tasks: number of tasks m.
    """

    def __init__(self, n_tasks: int, init: float = 0.0) -> None:
        super().__init__()
        if n_tasks < 2:
            raise PolytaskError(f"IMTLL: n_tasks must be >= 2, got {n_tasks}")
        self.log_scales = nn.Parameter(torch.full((n_tasks,), float(init)))

    def weights(self, stats: Statistics) -> Tensor:
        if stats.n_total != self.log_scales.shape[0]:
            raise PolytaskError(
                f"IMTLL: built for {self.log_scales.shape[0]} tasks, got {stats.n_total} losses"
            )
        return torch.exp(self.log_scales[task_rows(stats)])

    def regularizer(self, stats: Statistics | None = None) -> Tensor:
        s = self.log_scales if stats is None else self.log_scales[task_rows(stats)]
        return -s.sum()
