r"""Masked losses of many scalar tasks at once: ONE call and one small graph for ``[B, K]`` columns.

Column ``k`` of ``pred`` and ``target`` (both ``[B, K]``) belongs to task ``k``; NaN in ``target``
is a missing label. With ``M_k`` the labelled rows of column ``k`` and ``n_k = |M_k|``:

.. math::

    L_k = \frac{1}{n_k} \sum_{i \in M_k} \ell(z_{ik}, y_{ik}) \quad (n_k > 0), \qquad
    L_k = 0 \quad (n_k = 0)

A column without any label gives ``L_k = 0`` that is still connected to the graph (its head gets
a zero gradient), as :mod:`polytask.tasks.losses` does for one task. The element losses ``ℓ``:

* ``bce``: ``−[y log σ(z) + (1−y) log(1−σ(z))]`` (binary tasks; logits ``z``)
* ``mse``: ``(z − y)²``;  ``l1``: ``|z − y|``;
  ``huber``: ``½ (z − y)²`` if ``|z − y| < 1`` else ``|z − y| − ½`` (smooth L1, ``δ = 1``)

Column by column this is exactly the per-task masked loss (``masked_bce``, ``masked_mse``, ...);
only the floating-point summation order differs. Missing entries are replaced by 0 before ``ℓ``
and their element losses are selected away (never multiplied by 0), so they add neither value
nor gradient. Each function returns ``(L, n)``: the ``[K]`` losses and the ``[K]`` int64
labelled-row counts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

StackedLossFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

#: task kinds whose head output is one scalar per row, and so one column of a stacked head
STACKABLE_KINDS = ("binary", "regression")


def _masked_mean(
    pred: Tensor, target: Tensor, element: Callable[[Tensor, Tensor], Tensor]
) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(
            f"stacked loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
            "must both be [B, K]"
        )
    mask = ~torch.isnan(target)
    filled = torch.where(mask, target, torch.zeros((), dtype=target.dtype, device=target.device))
    per_entry = element(pred, filled)
    total = torch.where(mask, per_entry, torch.zeros((), dtype=per_entry.dtype, device=pred.device))
    counts = mask.sum(dim=0)
    return total.sum(dim=0) / counts.clamp_min(1).to(total.dtype), counts


def stacked_bce(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column binary cross-entropy on logits over the labelled rows (see the module)."""
    return _masked_mean(
        pred, target, lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="none")
    )


def stacked_mse(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column mean squared error over the labelled rows."""
    return _masked_mean(pred, target, lambda z, y: F.mse_loss(z, y, reduction="none"))


def stacked_l1(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column mean absolute error over the labelled rows."""
    return _masked_mean(pred, target, lambda z, y: F.l1_loss(z, y, reduction="none"))


def stacked_huber(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column Huber loss (smooth L1, δ = 1) over the labelled rows."""
    return _masked_mean(pred, target, lambda z, y: F.smooth_l1_loss(z, y, reduction="none"))


#: loss name → its stacked form; the same names as :data:`polytask.tasks.losses.LOSSES`
STACKED_LOSSES: dict[str, StackedLossFn] = {
    "bce": stacked_bce,
    "mse": stacked_mse,
    "l1": stacked_l1,
    "huber": stacked_huber,
}
