"""Fast adaptive multitask optimization (FAMO), Liu et al., NeurIPS 2023."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import LossWeighting, Statistics, lazy_buffer, task_rows


class FAMO(LossWeighting):
    r"""FAMO: weights from logits :math:`\xi`, updated so that all losses fall at the same rate.

    With :math:`z = \mathrm{softmax}(\xi)` and :math:`D_k = L_k - L_k^{\min} + \epsilon`, the update
    is :math:`\nabla \sum_k (z_k / c) \log D_k` with :math:`c = \sum_i z_i / D_i`, i.e. detached
    weights :math:`w_k = z_k / (c D_k)`.
    After a step, :math:`\delta_k = \log D_k(t) - \log D_k(t+1)` and :math:`\xi` takes one Adam
    step (lr :math:`\beta`, weight decay :math:`\gamma`) along :math:`(\partial z/\partial\xi)^\top
    \delta = z \odot (\delta - z^\top\delta)` (Algorithm 1 of the paper).

    Convention: the "loss after the step" is the loss given to the NEXT call (next batch), so each
    call first updates :math:`\xi` with the previous call's losses, then computes the weights. All
    of it (logits, Adam moments and step counts, previous losses) lives in buffers.

    Absent tasks (no label in the batch): the softmax, :math:`c` and the weights run over the
    present tasks P only, :math:`z = \mathrm{softmax}(\xi_P)`. :math:`\delta_k` exists only for
    tasks present in both calls S; the logit step uses :math:`z = \mathrm{softmax}(\xi_S)` and
    moves :math:`\xi_S` and their Adam moments only, each with its own step count. An absent task's
    logit is left where it was.

    :param lr: :math:`\beta`, Adam learning rate of the logits (0.025 in the paper).
    :param weight_decay: :math:`\gamma` (0.001 in the paper).
    :param min_loss: :math:`L^{\min}`, a lower bound of every loss (0 for non-negative losses).
    :param eps: :math:`\epsilon`.
    :param loss_ema: :math:`\rho` in [0, 1): the weights and :math:`\delta` use
        :math:`\bar L_k \leftarrow \rho \bar L_k + (1-\rho) L_k` over the calls where task k was
        present (its first loss as the start) instead of the batch loss; 0 (default) is the paper.

    Sparse labels: a rare task's batch often holds a few negatives only, and its batch loss can be
    driven to 0 (the log objective rewards it without bound), so :math:`1/D_k` takes nearly all
    the weight and the update of the shared layers vanishes — FAMO then trains nothing (measured
    in docs/results/many_tasks.md). ``loss_ema`` (e.g. 0.9) weighs each task by its recent average
    loss instead, which the batches with a positive keep away from 0: a variant, not the paper.
    """

    logits: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    prev_losses: Tensor
    adam_steps: Tensor

    def __init__(
        self,
        lr: float = 0.025,
        weight_decay: float = 1e-3,
        min_loss: float = 0.0,
        eps: float = 1e-8,
        loss_ema: float = 0.0,
    ) -> None:
        super().__init__()
        if lr <= 0 or weight_decay < 0:
            raise PolytaskError(
                f"FAMO: need lr > 0 and weight_decay >= 0, got {lr}, {weight_decay}"
            )
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.min_loss, self.eps = float(min_loss), float(eps)
        if not 0.0 <= loss_ema < 1.0:
            raise PolytaskError(f"FAMO: loss_ema must be in [0, 1), got {loss_ema}")
        self.loss_ema = float(loss_ema)
        self.betas = (0.9, 0.999)
        for name in ("logits", "exp_avg", "exp_avg_sq", "prev_losses", "adam_steps", "avg_losses"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.float64))

    def _shifted(self, losses: Tensor) -> Tensor:
        d = losses.detach().to(torch.float64) - self.min_loss + self.eps
        if bool((d <= 0).any()):
            raise PolytaskError(f"FAMO: losses must exceed min_loss={self.min_loss}")
        return d

    def _update_logits(self, both: Tensor, delta: Tensor) -> None:
        """One Adam step on the logits of the tasks ``both`` (present in both calls)."""
        xi = self.logits[both]
        z = torch.softmax(xi, dim=0)
        grad = z * (delta - (z * delta).sum()) + self.weight_decay * xi
        b1, b2 = self.betas
        t = self.adam_steps[both] + 1
        self.adam_steps[both] = t
        m1 = self.exp_avg[both] * b1 + grad * (1 - b1)
        m2 = self.exp_avg_sq[both] * b2 + grad * grad * (1 - b2)
        self.exp_avg[both], self.exp_avg_sq[both] = m1, m2
        denom = (m2.sqrt() / (1 - b2**t).sqrt()).add_(1e-8)
        self.logits[both] = xi - (self.lr / (1 - b1**t)) * m1 / denom

    def _smoothed(self, loss: Tensor, idx: Tensor) -> Tensor:
        """The batch losses, or (``loss_ema``) their running average over each task's presences."""
        if self.loss_ema == 0.0:
            return loss
        avg = lazy_buffer(self, "avg_losses", (self.logits.numel(),), fill=-1.0, device=loss.device)
        old = avg[idx]
        new = torch.where(old < 0, loss, self.loss_ema * old + (1 - self.loss_ema) * loss)
        avg[idx] = new
        return new

    def weights(self, stats: Statistics) -> Tensor:
        n = stats.n_total
        if self.logits.numel() != n:
            for name in ("logits", "exp_avg", "exp_avg_sq", "prev_losses", "adam_steps"):
                lazy_buffer(self, name, (n,), device=stats.losses.device)
        rows = task_rows(stats)
        idx = torch.arange(n, device=stats.losses.device)[rows]
        d = self._shifted(self._smoothed(stats.losses.detach().to(torch.float64), idx))
        prev = self.prev_losses[idx]
        seen = prev > 0  # present at the previous call (its D there; 0 = absent)
        if bool(seen.any()):
            self._update_logits(idx[seen], torch.log(prev[seen]) - torch.log(d[seen]))
        self.prev_losses.zero_()
        self.prev_losses[idx] = d
        z = torch.softmax(self.logits[idx], dim=0)
        c = (z / d).sum()
        return (z / (c * d)).to(stats.losses.dtype)
