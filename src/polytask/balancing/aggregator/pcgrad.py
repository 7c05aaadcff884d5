"""PCGrad, Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.sequential_projection import (
    Rule,
    project_per_task,
    project_shared,
    random_orders,
    random_permutation,
)
from polytask.balancing.base import GramianWeighting, Statistics

Order = Literal["per_task", "shared"]


def pcgrad_rule(diag: np.ndarray) -> Rule:
    """PCGrad's projection: :math:`\\delta = -g_i^{PC}\\cdot g_j / G_{jj}` when the dot is negative
    (and :math:`G_{jj} > 0`), else 0."""

    def rule(
        i: np.ndarray, j: np.ndarray | int, inner: np.ndarray, norm2: np.ndarray
    ) -> np.ndarray:
        gjj = diag[j]
        return np.where((inner < 0.0) & (gjj > 0.0), -inner / np.where(gjj > 0, gjj, 1.0), 0.0)

    return rule


class PCGrad(GramianWeighting):
    r"""PCGrad: for each task i, in a random order of the other tasks j, if
    :math:`g_i^{PC}\cdot g_j < 0` project: :math:`g_i^{PC} \leftarrow g_i^{PC} -
    \frac{g_i^{PC}\cdot g_j}{\|g_j\|^2} g_j`; the update is :math:`\sum_i g_i^{PC}`.

    Gramian form (as torchjd's ``PCGradWeighting``): :math:`g_i^{PC} = \sum_k C_{ik} g_k`, so
    :math:`g_i^{PC}\cdot g_j = (C G)_{ij}` and a projection is :math:`C_{ij} \mathrel{-}=
    (CG)_{ij}/G_{jj}`; :math:`w = \mathbf 1^\top C` (:mod:`.sequential_projection`).

    :param order: ``"per_task"`` (default, the paper's algorithm): an independent random order for
        every task — O(m³) memory-bound work. ``"shared"`` (a variant, not the paper's): one random
        permutation π per step, task i's order being π without i — each task's order has the same
        distribution, so the expected update is the same, but the orders are correlated across
        tasks; it runs as a blocked forward substitution at BLAS-3 speed.
    """

    def __init__(self, order: Order = "per_task") -> None:
        super().__init__()
        if order not in ("per_task", "shared"):
            raise PolytaskError(f"PCGrad: order must be 'per_task' or 'shared', got {order!r}")
        self.order: Order = order

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("PCGrad: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu().numpy()
        m = g.shape[0]
        rule = pcgrad_rule(np.diag(g).copy())
        if self.order == "shared":
            c_sum = project_shared(g, random_permutation(m), rule)
        else:
            c_sum = project_per_task(g, random_orders(m), rule)
        w = torch.from_numpy(c_sum)
        return w.to(device=stats.gramian.device, dtype=stats.gramian.dtype)
