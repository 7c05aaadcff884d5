"""Equal weighting (EW): the plain sum of task losses."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.balancing.base import LossWeighting, Statistics


class EW(LossWeighting):
    r"""Equal weighting: :math:`w_k = 1`, the update is :math:`\nabla \sum_k L_k`.

    Absent tasks (no label in the batch) get weight 0; their loss is a constant 0 anyway."""

    def weights(self, stats: Statistics) -> Tensor:
        return torch.ones_like(stats.losses)
