"""MGDA (Désidéri 2012), solved as in Sener & Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018 — torchjd's ``MGDAWeighting``."""

from __future__ import annotations

from polytask.balancing.aggregator.torchjd_weighting import (
    TorchJDGramianWeighting,
    torchjd_aggregation,
)


class MGDA(TorchJDGramianWeighting):
    r"""MGDA: the min-norm point of the convex hull of the task gradients,
    :math:`w = \arg\min_{w \in \Delta_m} w^\top G w`, update :math:`J^\top w` (Frank–Wolfe,
    Algorithm 2 of Sener & Koltun). Every :math:`g_k \cdot J^\top w \ge \|J^\top w\|^2 \ge 0`.

    :param epsilon: stop when the Frank–Wolfe step is below this. :param max_iters: cap.
    """

    non_conflicting = True

    def __init__(self, epsilon: float = 1e-3, max_iters: int = 100) -> None:
        super().__init__(torchjd_aggregation().MGDAWeighting(epsilon=epsilon, max_iters=max_iters))
