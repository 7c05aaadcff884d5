"""GradNorm, Chen et al., "Gradient Normalization for Adaptive Loss Balancing", ICML 2018."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import LossWeighting, Statistics, lazy_buffer, task_rows


class GradNorm(LossWeighting):
    r"""GradNorm: learn :math:`w_k` so that each task's gradient norm at one layer :math:`W`
    tracks its relative training rate.

    With :math:`n_k = \|\nabla_W L_k\|`, :math:`G_k = w_k n_k`, :math:`\bar G = \mathrm{mean}_k G_k`,
    :math:`\tilde L_k = L_k / L_k(0)` and :math:`r_k = \tilde L_k / \mathrm{mean}_j \tilde L_j`:
    :math:`L_{grad} = \sum_k |G_k - \bar G\, r_k^{\alpha}|` with the target held constant (paper,
    Eq. 2), so :math:`\partial L_{grad}/\partial w_k = \mathrm{sign}(G_k - \bar G r_k^\alpha)\, n_k`.
    The step uses the current :math:`w(t)`; then :math:`w \leftarrow \max(w - \eta\,\partial
    L_{grad}/\partial w, 10^{-6})` renormalised to :math:`\sum_k w_k = K`.

    :math:`W` is the shared features in ``features`` mode, else the last shared parameter.

    Absent tasks: the means, the rates and the renormalisation run over the present tasks P
    (:math:`\sum_{k\in P} w_k = |P|` after the step); :math:`L_k(0)` is task k's loss the first
    time it is present. An absent task's weight and :math:`L_k(0)` are left as they were.

    :param alpha: the asymmetry :math:`\alpha` (1.5 in the paper).
    :param lr: :math:`\eta`, SGD step on the weights.
    """

    needs = frozenset({"losses", "grad_norms"})
    task_weights: Tensor
    initial_losses: Tensor

    def __init__(self, alpha: float = 1.5, lr: float = 0.025) -> None:
        super().__init__()
        if lr <= 0:
            raise PolytaskError(f"GradNorm: lr must be > 0, got {lr}")
        self.alpha, self.lr = float(alpha), float(lr)
        self.register_buffer("task_weights", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("initial_losses", torch.zeros(0, dtype=torch.float64))

    def weights(self, stats: Statistics) -> Tensor:
        if stats.grad_norms is None:
            raise PolytaskError("GradNorm: the statistic has no grad_norms")
        m, rows = stats.n_tasks, task_rows(stats)
        loss = stats.losses.detach().to(torch.float64)
        if self.task_weights.numel() != stats.n_total:
            lazy_buffer(self, "task_weights", (stats.n_total,), fill=1.0, device=loss.device)
            lazy_buffer(self, "initial_losses", (stats.n_total,), fill=-1.0, device=loss.device)
        first = self.initial_losses[rows]
        first = torch.where(first < 0, loss, first)  # first presence: L_k(0) = L_k
        self.initial_losses[rows] = first
        w = self.task_weights[rows].clone()
        n = stats.grad_norms.detach().to(torch.float64)
        g = w * n
        rate = loss / first
        target = g.mean() * (rate / rate.mean()) ** self.alpha
        new = (w - self.lr * torch.sign(g - target) * n).clamp_min(1e-6)
        self.task_weights[rows] = m * new / new.sum()
        return w.to(stats.losses.dtype)
