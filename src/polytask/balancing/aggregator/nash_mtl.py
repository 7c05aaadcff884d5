"""Nash-MTL, Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.alpha_fair import alpha_fair_solve
from polytask.balancing.base import GramianWeighting, Statistics, lazy_buffer, task_rows


class NashMTL(GramianWeighting):
    r"""Nash-MTL: the Nash bargaining solution, :math:`d = J^\top\alpha` with
    :math:`G \alpha = 1/\alpha` (elementwise), :math:`\alpha > 0` (paper, Algorithm 1; the
    official code's constraint :math:`\alpha_k (G\alpha)_k \ge 1` undoes its Frobenius
    normalisation, so it is the un-normalised G). Solved on :math:`\hat G = G/s + \epsilon I`,
    :math:`s = \|G\|_F`, then :math:`\alpha = \hat\alpha/\sqrt s` (the tiny ridge keeps a solution
    when G is singular). Then :math:`g_k\cdot d = 1/\alpha_k > 0`, and d does not depend on the
    scale of J.
    If :math:`\|J^\top\alpha\| = \sqrt{\alpha^\top G\alpha}` exceeds ``max_norm``, α is scaled
    down to it (0 disables).

    The paper's code approximates the solution by a sequence of convex programs (cvxpy, as
    torchjd's ``NashMTL``); here it is solved exactly as the minimiser of the strictly convex
    :math:`\tfrac12\alpha^\top\hat G\alpha - \sum_k\log\alpha_k` by damped Newton in float64 (:mod:`.alpha_fair`),
    warm-started from the previous α (a buffer).

    Absent tasks: solved over the present tasks; the warm start of each task is its own last
    :math:`\hat\alpha_k` (1 before its first presence), and only the present entries are stored.

    :param max_norm: clip of the update norm (1.0 as in the official code and torchjd).
    :param reg_eps: the ridge :math:`\epsilon`.
    """

    non_conflicting = True
    prev_alpha: Tensor

    def __init__(self, max_norm: float = 1.0, reg_eps: float = 1e-8) -> None:
        super().__init__()
        if max_norm < 0 or reg_eps < 0:
            raise PolytaskError(
                f"NashMTL: max_norm and reg_eps must be >= 0, got {max_norm}, {reg_eps}"
            )
        self.max_norm, self.reg_eps = float(max_norm), float(reg_eps)
        self.register_buffer("prev_alpha", torch.zeros(0, dtype=torch.float64))

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("NashMTL: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu()
        m = g.shape[0]
        norm = float(torch.linalg.matrix_norm(g))
        if norm == 0.0:
            return torch.zeros(m, dtype=stats.gramian.dtype, device=stats.gramian.device)
        prev = lazy_buffer(
            self, "prev_alpha", (stats.n_total,), fill=1.0, device=torch.device("cpu")
        )
        rows = task_rows(stats)
        rows = rows if isinstance(rows, slice) else rows.cpu()
        gn = (g / norm).numpy() + self.reg_eps * np.eye(m)
        start = prev[rows].numpy()
        alpha_hat = torch.from_numpy(alpha_fair_solve(gn, start, alpha=1.0, name="NashMTL"))
        prev[rows] = alpha_hat
        alpha = alpha_hat / norm**0.5
        if self.max_norm > 0:
            upd = float(alpha @ g @ alpha) ** 0.5
            if upd > self.max_norm:
                alpha = alpha * (self.max_norm / upd)
        return alpha.to(device=stats.gramian.device, dtype=stats.gramian.dtype)
