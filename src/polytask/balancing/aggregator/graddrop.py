"""GradDrop, Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign
Dropout", NeurIPS 2020 — torchjd's ``GradDrop`` (needs the Jacobian, not a weighting)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.aggregator.torchjd_weighting import torchjd_aggregation
from polytask.balancing.base import JacobianAggregator, Statistics, task_rows


class GradDrop(JacobianAggregator):
    r"""GradDrop: per coordinate, positive sign purity :math:`P = \frac12(1 + \frac{\sum_k g_k}
    {\sum_k |g_k|})`; with :math:`U \sim \mathcal U(0,1)` per coordinate, keep the positive
    entries where :math:`P > U` and the negative ones where :math:`P < U`; the update is the sum
    of the kept entries (plus a ``leak`` fraction of each task's full gradient). The paper applies
    it at the shared activations: that is ``features`` mode. Random (torch's global RNG); reported
    weights are the nominal ones (the masks act per coordinate).

    Absent tasks have zero rows and are left out; the leak of task k stays task k's.

    :param leak: per-task leak in [0, 1], or None for no leak.
    """

    def __init__(self, leak: Sequence[float] | None = None) -> None:
        super().__init__()
        leak_t = None if leak is None else torch.tensor([float(x) for x in leak])
        if leak_t is not None and bool(((leak_t < 0) | (leak_t > 1)).any()):
            raise PolytaskError(f"GradDrop: leak values must be in [0, 1], got {list(leak or [])}")
        self.inner = torchjd_aggregation().GradDrop(leak=leak_t)

    def aggregate(self, stats: Statistics) -> tuple[Tensor, Tensor]:
        jac = stats.jacobian
        if jac is None:
            raise PolytaskError("GradDrop: the statistic has no Jacobian")
        leak = self.inner.leak
        if leak is not None and leak.numel() != stats.n_total:
            raise PolytaskError(f"GradDrop: {leak.numel()} leak values for {stats.n_total} tasks")
        inner = self.inner
        if leak is not None and stats.index is not None:
            inner = torchjd_aggregation().GradDrop(leak=leak[task_rows(stats)])
        return inner(jac), torch.ones(jac.shape[0], dtype=jac.dtype, device=jac.device)
