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
    exactly the same update. Losses must be non-negative.

    Over the present tasks P. A present task whose loss is exactly 0 (a batch whose labels the
    model fits to float precision, e.g. a few negatives of a rare assay) has a zero gradient and
    would make the geometric mean 0 and its own weight infinite: it is left out like an absent
    task (weight 0, K and the mean over the others), so one saturated task does not stop all
    training. Every loss 0: weights 0.
    """

    def weights(self, stats: Statistics) -> Tensor:
        loss = stats.losses.detach().to(torch.float64)
        if bool((loss < 0).any()):
            raise PolytaskError(f"GLS: needs non-negative losses, got {loss.tolist()}")
        live = loss > 0
        safe = torch.where(live, loss, 1.0)
        k = live.sum().clamp_min(1)
        gm = torch.exp(torch.log(safe).sum() / k)
        return torch.where(live, gm / (k * safe), 0.0).to(stats.losses.dtype)
