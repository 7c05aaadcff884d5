"""Random loss weighting (RLW), Lin et al., "Reasonable Effectiveness of Random Weighting", TMLR 2022."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.balancing.base import LossWeighting, Statistics


class RLW(LossWeighting):
    r"""RLW: :math:`w = \mathrm{softmax}(\tilde\lambda)`, :math:`\tilde\lambda \sim \mathcal N(0, I_m)`
    drawn afresh every call from torch's global generator (checkpoint it with the trainer's RNG
    state); the weights sum to 1. Absent tasks (no label in the batch) get weight 0 and take no draw:
    the softmax runs over the present tasks."""

    def weights(self, stats: Statistics) -> Tensor:
        z = torch.randn(stats.n_tasks, dtype=torch.float64)
        return torch.softmax(z, dim=0).to(stats.losses.dtype)
