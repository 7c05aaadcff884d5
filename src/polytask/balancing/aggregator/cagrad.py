"""CAGrad, Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.simplex_qp import cagrad_dual
from polytask.balancing.base import GramianWeighting, Statistics


class CAGrad(GramianWeighting):
    r"""CAGrad: maximise the worst task improvement within a ball around the mean gradient
    :math:`g_0`: :math:`\max_d \min_k g_k\cdot d` s.t. :math:`\|d - g_0\| \le c\|g_0\|`.
    Dual: :math:`w^\star = \arg\min_{w\in\Delta} g_w^\top g_0 + c\|g_0\|\|g_w\|`, update
    :math:`g_0 + \frac{c\|g_0\|}{\|g_{w^\star}\|} g_{w^\star}` (no :math:`1/(1+c^2)` rescale), i.e.
    :math:`w = \mathbf 1/m + \frac{c\|g_0\|}{\|g_{w^\star}\|} w^\star`, computed on the Gramian
    normalised by its trace, and :math:`w = 0` when :math:`\|g_{w^\star}\|` < ``norm_eps`` (on the
    Pareto front) — the conventions of torchjd's ``CAGradWeighting``.

    torchjd solves the dual with cvxpy/Clarabel; here it is solved exactly as a 1-D convex search
    over :math:`s = \|g_w\|` with one simplex QP per step (:mod:`.simplex_qp`), no cvxpy.

    :param c: radius factor :math:`c` (0.4 in the paper's experiments).
    """

    def __init__(self, c: float = 0.4, norm_eps: float = 1e-4) -> None:
        super().__init__()
        if c < 0 or norm_eps < 0:
            raise PolytaskError(f"CAGrad: c and norm_eps must be >= 0, got {c}, {norm_eps}")
        self.c, self.norm_eps = float(c), float(norm_eps)

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("CAGrad: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu().numpy()
        m = g.shape[0]
        trace = float(np.trace(g))
        out = np.zeros(m)
        if trace >= self.norm_eps:
            gn = g / trace
            b = gn.sum(axis=1) / m
            phi = self.c * float(np.sqrt(max(gn.sum(), 0.0))) / m
            if phi == 0.0:
                out = np.full(m, 1.0 / m)
            else:
                w = cagrad_dual(gn + 1e-12 * np.eye(m), b, phi)
                gw = float(np.sqrt(max(w @ gn @ w, 0.0)))
                if gw >= self.norm_eps:
                    out = 1.0 / m + (phi / gw) * w
        return torch.from_numpy(out).to(stats.gramian.device, stats.gramian.dtype)
