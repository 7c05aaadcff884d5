"""Geometric loss strategy (GLS), Chennupati et al., "MultiNet++", CVPR Workshops 2019."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import LossWeighting, Statistics


class GLS(LossWeighting):
    r"""GLS minimises the geometric mean :math:`(\prod_k L_k)^{1/K}`.

    Its gradient is :math:`\frac{\bar L}{K}\sum_k \nabla L_k / L_k` with
    :math:`\bar L = (\prod_k L_k)^{1/K}`, i.e. detached weights :math:`w_k = \bar L / (K L_k)` give
    exactly the same update. Losses must be positive.
    """

    def weights(self, stats: Statistics) -> Tensor:
        loss = stats.losses.detach().to(torch.float64)
        if bool((loss <= 0).any()):
            raise PolytaskError(f"GLS: needs positive losses, got {loss.tolist()}")
        gm = torch.exp(torch.log(loss).mean())
        return (gm / (loss.numel() * loss)).to(stats.losses.dtype)
