"""IMTL-G, the gradient half of Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021 —
torchjd's ``IMTLGWeighting``."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.pinv_solve import pinv_solve
from polytask.balancing.base import GramianWeighting, Statistics


class IMTLG(GramianWeighting):
    r"""IMTL-G: the update :math:`d = J^\top w` has equal projections on every unit task
    gradient, :math:`d \cdot g_k / \|g_k\|` the same for all k. In Gramian form
    :math:`v = G^{+} \sqrt{\mathrm{diag}(G)}`, :math:`w = v / \sum_k v_k` (0 when
    :math:`|\sum_k v_k| < 10^{-12}`), as torchjd's ``IMTLGWeighting``.

    :math:`G^{+} b` is a Cholesky solve when G is certified well-conditioned (then
    :math:`G^{+} = G^{-1}`), torchjd's ``torch.linalg.pinv`` otherwise (:mod:`.pinv_solve`).
    """

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("IMTLG: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64)
        v = pinv_solve(g, g.diagonal().clamp_min(0.0).sqrt(), hermitian=False)
        v_sum = v.sum()
        w = torch.zeros_like(v) if float(v_sum.abs()) < 1e-12 else v / v_sum
        return w.to(stats.gramian.dtype)
