"""GradVac, Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task Optimization in
Massively Multilingual Models", ICLR 2021."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.pcgrad import random_orders
from polytask.balancing.base import GramianWeighting, Statistics, lazy_buffer


class GradVac(GramianWeighting):
    r"""GradVac: raise every pairwise cosine to an EMA target :math:`\hat\phi_{ij}`.

    For each i, over a random order of the other tasks j, with
    :math:`\phi_{ij} = \cos(g_i^{PC}, g_j)`: if :math:`\phi_{ij} < \hat\phi_{ij}`,
    :math:`g_i^{PC} \mathrel{+}= \frac{\|g_i^{PC}\|(\hat\phi_{ij}\sqrt{1-\phi_{ij}^2} -
    \phi_{ij}\sqrt{1-\hat\phi_{ij}^2})}{\|g_j\|\sqrt{1-\hat\phi_{ij}^2}} g_j`; then
    :math:`\hat\phi_{ij} \leftarrow (1-\beta)\hat\phi_{ij} + \beta\phi_{ij}`. Update
    :math:`\sum_i g_i^{PC}`. Gramian form as in torchjd's ``GradVacWeighting`` (same ``eps``
    placement), vectorised over i; :math:`\hat\phi` starts at 0 and is a buffer.

    Absent tasks: the projections run over the present tasks; only the targets
    :math:`\hat\phi_{ij}` of present pairs are read and moved.

    :param beta: EMA rate :math:`\beta`. :param eps: added to denominators.
    """

    phi_hat: Tensor

    def __init__(self, beta: float = 0.5, eps: float = 1e-8) -> None:
        super().__init__()
        if not 0.0 <= beta <= 1.0:
            raise PolytaskError(f"GradVac: beta must be in [0, 1], got {beta}")
        self.beta, self.eps = float(beta), float(eps)
        self.register_buffer("phi_hat", torch.zeros(0, dtype=torch.float64))

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("GradVac: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu().numpy()
        m = g.shape[0]
        n = stats.n_total
        phi_t = lazy_buffer(self, "phi_hat", (n, n), device=torch.device("cpu"))  # NumPy state
        sub = None if stats.index is None else stats.index.cpu().numpy()
        # all present: the buffer itself (shared memory); else the present block, written back
        hat_all = phi_t.numpy() if sub is None else phi_t.numpy()[np.ix_(sub, sub)]
        order = random_orders(m)
        c = np.eye(m)
        cg = g.copy()  # rows: g_i^PC · g_j for all j
        rows = np.arange(m)
        norm_g = np.sqrt(np.clip(np.diag(g), 0.0, None))
        for t in range(m - 1):
            j = order[:, t]
            dot = cg[rows, j]
            norm_i = np.sqrt(np.clip(np.einsum("ik,ik->i", cg, c), 0.0, None))
            norm_j = norm_g[j]
            phi = dot / (norm_i * norm_j + self.eps)
            hat = hat_all[rows, j]
            s_phi = np.sqrt(np.clip(1.0 - phi * phi, 0.0, None))
            s_hat = np.sqrt(np.clip(1.0 - hat * hat, 0.0, None))
            w = norm_i * (hat * s_phi - phi * s_hat) / (norm_j * s_hat + self.eps)
            w = np.where(phi < hat, w, 0.0)
            c[rows, j] += w
            cg += w[:, None] * g[j]
            hat_all[rows, j] = (1.0 - self.beta) * hat + self.beta * phi
        if sub is not None:
            phi_t.numpy()[np.ix_(sub, sub)] = hat_all
        out = torch.from_numpy(c.sum(axis=0))
        return out.to(device=stats.gramian.device, dtype=stats.gramian.dtype)
