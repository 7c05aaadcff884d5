"""Fast adaptive multitask optimization (FAMO), Liu et al., NeurIPS 2023."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.balancing.base import LossWeighting, Statistics, lazy_buffer


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
    of it (logits, Adam moments, previous losses) lives in buffers.

    :param lr: :math:`\beta`, Adam learning rate of the logits (0.025 in the paper).
    :param weight_decay: :math:`\gamma` (0.001 in the paper).
    :param min_loss: :math:`L^{\min}`, a lower bound of every loss (0 for non-negative losses).
    :param eps: :math:`\epsilon`.
    """

    logits: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    prev_losses: Tensor
    adam_step: Tensor

    def __init__(
        self,
        lr: float = 0.025,
        weight_decay: float = 1e-3,
        min_loss: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if lr <= 0 or weight_decay < 0:
            raise PolytaskError(
                f"FAMO: need lr > 0 and weight_decay >= 0, got {lr}, {weight_decay}"
            )
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.min_loss, self.eps = float(min_loss), float(eps)
        self.betas = (0.9, 0.999)
        for name in ("logits", "exp_avg", "exp_avg_sq", "prev_losses"):
            self.register_buffer(name, torch.zeros(0, dtype=torch.float64))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.int64))

    def _shifted(self, losses: Tensor) -> Tensor:
        d = losses.detach().to(torch.float64) - self.min_loss + self.eps
        if bool((d <= 0).any()):
            raise PolytaskError(f"FAMO: losses must exceed min_loss={self.min_loss}")
        return d

    def _update_logits(self, delta: Tensor) -> None:
        z = torch.softmax(self.logits, dim=0)
        grad = z * (delta - (z * delta).sum()) + self.weight_decay * self.logits
        b1, b2 = self.betas
        self.adam_step += 1
        t = int(self.adam_step)
        self.exp_avg.mul_(b1).add_(grad, alpha=1 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - b2**t)).add_(1e-8)
        self.logits.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - b1**t))

    def weights(self, stats: Statistics) -> Tensor:
        m = stats.n_tasks
        d = self._shifted(stats.losses)
        fresh = self.logits.numel() != m
        for name in ("logits", "exp_avg", "exp_avg_sq", "prev_losses"):
            lazy_buffer(self, name, (m,), device=stats.losses.device)
        if fresh:
            self.adam_step.zero_()
        else:
            self._update_logits(torch.log(self.prev_losses) - torch.log(d))
        self.prev_losses.copy_(d)
        z = torch.softmax(self.logits, dim=0)
        c = (z / d).sum()
        return (z / (c * d)).to(stats.losses.dtype)
