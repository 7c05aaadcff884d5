"""MGDA (Désidéri 2012), solved as in Sener & Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018 (Algorithm 2, Frank–Wolfe on the Gramian)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import GramianWeighting, Statistics


def frank_wolfe_min_norm(g: np.ndarray, epsilon: float, max_iters: int) -> np.ndarray:
    """``argmin_{w∈Δ} wᵀGw`` by Frank–Wolfe with exact line search (Algorithm 2)."""
    m = g.shape[0]
    w = np.full(m, 1.0 / m)
    gw = g @ w
    for _ in range(max_iters):
        t = int(np.argmin(gw))
        a, b, c = gw[t], w @ gw, g[t, t]
        if c <= a:
            gamma = 1.0
        elif b <= a:
            gamma = 0.0
        else:
            gamma = (b - a) / (b + c - 2 * a)
        w *= 1 - gamma
        w[t] += gamma
        gw = (1 - gamma) * gw + gamma * g[t]
        if gamma < epsilon:
            break
    return w


class MGDA(GramianWeighting):
    r"""MGDA: the min-norm point of the convex hull of the task gradients,
    :math:`w = \arg\min_{w \in \Delta_m} w^\top G w`, update :math:`J^\top w`. At the optimum
    every :math:`g_k \cdot J^\top w \ge \|J^\top w\|^2 \ge 0`.

    Frank–Wolfe as in Algorithm 2 of Sener & Koltun — step to the vertex
    :math:`t = \arg\min_k (Gw)_k`, exact line search
    :math:`\gamma = \frac{w^\top G w - (Gw)_t}{w^\top G w + G_{tt} - 2 (Gw)_t}` clipped to [0, 1],
    stop when :math:`\gamma` < ``epsilon``. Same iteration as torchjd's ``MGDAWeighting``, run in
    float64 NumPy with :math:`Gw` updated incrementally (no per-iteration matrix product).

    :param epsilon: stop when the Frank–Wolfe step is below this. :param max_iters: cap.
    """

    non_conflicting = True

    def __init__(self, epsilon: float = 1e-3, max_iters: int = 100) -> None:
        super().__init__()
        if epsilon <= 0 or max_iters <= 0:
            raise PolytaskError(
                f"MGDA: need epsilon > 0 and max_iters > 0, got {epsilon}, {max_iters}"
            )
        self.epsilon, self.max_iters = float(epsilon), int(max_iters)

    def weights(self, stats: Statistics) -> Tensor:
        if stats.gramian is None:
            raise PolytaskError("MGDA: the statistic has no Gramian")
        g = stats.gramian.detach().to(torch.float64).cpu().numpy()
        w = torch.from_numpy(frank_wolfe_min_norm(g, self.epsilon, self.max_iters))
        return w.to(device=stats.gramian.device, dtype=stats.gramian.dtype)
