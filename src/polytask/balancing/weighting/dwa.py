"""Dynamic weight average (DWA), Liu, Johns & Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import LossWeighting, Statistics, lazy_buffer, task_rows


class DWA(LossWeighting):
    r"""DWA: :math:`w_k(t) = K\,\mathrm{softmax}_k\big(r(t-1)/T\big)`,
    :math:`r_k(t-1) = L_k(t-1)/L_k(t-2)`, and :math:`w_k = 1` for the first two calls.

    The paper averages losses over an epoch; here ``t`` counts calls (optimizer steps), with the
    losses of that call. With ``Balancer(every=N)`` this stays per call. The history is kept in
    buffers.

    Absent tasks: the softmax runs over the present tasks P, :math:`w_P = |P|\,
    \mathrm{softmax}(r_P/T)`; :math:`r_k` is the ratio of task k's last two losses from calls
    where it was present, and 1 until it has two (so the first two calls give every weight 1, as
    in the paper). An absent task's history is left as it was. A ratio whose older loss is 0 (a
    present task fit to float precision, e.g. a few negatives of a rare assay) is undefined and
    taken as 1, so one saturated task cannot take all the weight or make it NaN.

    :param temperature: :math:`T` (2 in the paper).
    """

    history: Tensor
    seen: Tensor

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise PolytaskError(f"DWA: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("history", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("seen", torch.zeros(0, dtype=torch.float64))

    def weights(self, stats: Statistics) -> Tensor:
        n, rows = stats.n_total, task_rows(stats)
        hist = lazy_buffer(self, "history", (2, n), device=stats.losses.device)
        seen = lazy_buffer(self, "seen", (n,), device=stats.losses.device)
        loss = stats.losses.detach().to(torch.float64)
        h0, h1, count = hist[0, rows], hist[1, rows], seen[rows]
        defined = (count >= 2) & (h0 > 0)
        r = torch.where(defined, h1 / torch.where(defined, h0, 1.0), 1.0)
        w = stats.n_tasks * torch.softmax(r / self.temperature, dim=0)
        hist[0, rows] = h1
        hist[1, rows] = loss
        seen[rows] = (count + 1).clamp_max(2)
        return w.to(stats.losses.dtype)
