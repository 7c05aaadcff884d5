"""GradDrop, Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign
Dropout", NeurIPS 2020 — torchjd's ``GradDrop`` conventions, vectorised over the tasks (needs the
Jacobian, not a weighting)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import JacobianAggregator, Statistics, task_rows


class GradDrop(JacobianAggregator):
    r"""GradDrop: per coordinate, positive sign purity :math:`P = \frac12(1 + \frac{\sum_k g_k}
    {\sum_k |g_k|})`; with :math:`U \sim \mathcal U(0,1)` per coordinate, keep the positive
    entries where :math:`P > U` and the negative ones where :math:`P < U`; the update is the sum
    of the kept entries (plus a ``leak`` fraction of each task's full gradient). The paper applies
    it at the shared activations: that is ``features`` mode. Random (torch's global RNG); reported
    weights are the nominal ones (the masks act per coordinate).

    Same draw and arithmetic as torchjd's ``GradDrop`` (one ``torch.rand`` of the coordinates'
    shape), computed for all tasks at once instead of a Python loop over them (41× the plain step
    at K = 600 with the loop). Absent tasks have zero rows and are left out; the leak of task k
    stays task k's.

    :param leak: per-task leak in [0, 1], or None for no leak.
    """

    leak: Tensor | None

    def __init__(self, leak: Sequence[float] | None = None) -> None:
        super().__init__()
        leak_t = (
            None if leak is None else torch.tensor([float(x) for x in leak], dtype=torch.float64)
        )
        if leak_t is not None and bool(((leak_t < 0) | (leak_t > 1)).any()):
            raise PolytaskError(f"GradDrop: leak values must be in [0, 1], got {list(leak or [])}")
        self.leak = leak_t

    def aggregate(self, stats: Statistics) -> tuple[Tensor, Tensor]:
        jac = stats.jacobian
        if jac is None:
            raise PolytaskError("GradDrop: the statistic has no Jacobian")
        ones = torch.ones(jac.shape[0], dtype=jac.dtype, device=jac.device)
        if self.leak is not None and self.leak.numel() != stats.n_total:
            raise PolytaskError(
                f"GradDrop: {self.leak.numel()} leak values for {stats.n_total} tasks"
            )
        if jac.shape[0] == 0 or jac.shape[1] == 0:
            return jac.new_zeros(jac.shape[1]), ones
        leak = jac.new_zeros(jac.shape[0])
        if self.leak is not None:
            leak = self.leak[task_rows(stats)].to(jac)
        purity = 0.5 * (1.0 + jac.sum(dim=0) / jac.abs().sum(dim=0))
        u = torch.rand(purity.shape, dtype=jac.dtype, device=jac.device)
        keep = ((purity > u) & (jac > 0)) | ((purity < u) & (jac < 0))
        return leak @ jac + (1.0 - leak) @ torch.where(keep, jac, 0.0), ones
