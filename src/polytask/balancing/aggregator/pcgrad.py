"""PCGrad, Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import GramianWeighting, Statistics


def random_orders(m: int) -> np.ndarray:
    """``[m, m-1]``: row i is a random order of the tasks other than i (torch's global RNG)."""
    keys = torch.rand(m, m, dtype=torch.float64)
    keys.fill_diagonal_(2.0)
    return torch.argsort(keys, dim=1)[:, : m - 1].numpy()


class PCGrad(GramianWeighting):
    r"""PCGrad: for each task i, in a random order of the other tasks j, if
    :math:`g_i^{PC}\cdot g_j < 0` project: :math:`g_i^{PC} \leftarrow g_i^{PC} -
    \frac{g_i^{PC}\cdot g_j}{\|g_j\|^2} g_j`; the update is :math:`\sum_i g_i^{PC}`.

    Gramian form (as torchjd's ``PCGradWeighting``): :math:`g_i^{PC} = \sum_k C_{ik} g_k`, so
    :math:`g_i^{PC}\cdot g_j = (C G)_{ij}` and a projection is :math:`C_{ij} \mathrel{-}=
    (CG)_{ij}/G_{jj}`; :math:`w = \mathbf 1^\top C`. Here all i advance together (one vectorised
    pass per position in the order), which is the same algorithm, m−1 steps instead of m(m−1).
    """

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("PCGrad: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu().numpy()
        m = g.shape[0]
        order = random_orders(m)
        c = np.eye(m)
        rows = np.arange(m)
        diag = np.diag(g)
        for t in range(m - 1):
            j = order[:, t]
            inner = np.einsum("ik,ik->i", c, g[j])
            gjj = diag[j]
            proj = (inner < 0.0) & (gjj > 0.0)
            c[rows, j] -= np.where(proj, inner / np.where(gjj > 0, gjj, 1.0), 0.0)
        w = torch.from_numpy(c.sum(axis=0))
        return w.to(device=stats.gramian.device, dtype=stats.gramian.dtype)
