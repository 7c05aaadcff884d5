"""Dynamic weight average (DWA), Liu, Johns & Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import LossWeighting, Statistics, lazy_buffer


class DWA(LossWeighting):
    r"""DWA: :math:`w_k(t) = K\,\mathrm{softmax}_k\big(r(t-1)/T\big)`,
    :math:`r_k(t-1) = L_k(t-1)/L_k(t-2)`, and :math:`w_k = 1` for the first two calls.

    The paper averages losses over an epoch; here ``t`` counts calls (optimizer steps), with the
    losses of that call. With ``Balancer(every=N)`` this stays per call. The history is kept in
    buffers.

    :param temperature: :math:`T` (2 in the paper).
    """

    history: Tensor
    count: Tensor

    def __init__(self, temperature: float = 2.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise PolytaskError(f"DWA: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("history", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def weights(self, stats: Statistics) -> Tensor:
        m = stats.n_tasks
        hist = lazy_buffer(self, "history", (2, m), device=stats.losses.device)
        loss = stats.losses.detach().to(torch.float64)
        if int(self.count) >= 2:
            r = hist[1] / hist[0]
            w = m * torch.softmax(r / self.temperature, dim=0)
        else:
            w = torch.ones(m, dtype=torch.float64, device=hist.device)
        hist[0] = hist[1]
        hist[1] = loss
        self.count += 1
        return w.to(stats.losses.dtype)
