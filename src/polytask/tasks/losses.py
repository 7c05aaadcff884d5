"""Per-task losses that mask missing labels.

Missing labels are NaN in the target tensor. They are removed before the loss is computed —
never treated as negatives or zeros. A batch in which a task has no label at all gives a zero
loss that is still connected to the graph (so every head receives a, zero, gradient).

Formulas, with ``M`` the set of labelled entries (``|M| > 0``):

* ``bce``: ``1/|M| Σ_{i∈M} −[y_i log σ(z_i) + (1−y_i) log(1−σ(z_i))]`` (binary, multilabel)
* ``ce``: ``1/|M| Σ_{i∈M} −log softmax(z_i)[y_i]`` (multiclass)
* ``mse``: ``1/|M| Σ_{i∈M} (z_i − y_i)²``;  ``l1``: ``1/|M| Σ |z_i − y_i|``;
  ``huber``: smooth-L1 with ``δ = 1`` (regression)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor], Tensor]


def _empty(pred: Tensor) -> Tensor:
    return pred.sum() * 0.0


def masked_bce(pred: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy on logits over the labelled entries (any shape, NaN = missing)."""
    mask = ~torch.isnan(target)
    if not bool(mask.any()):
        return _empty(pred)
    return F.binary_cross_entropy_with_logits(pred[mask], target[mask])


def masked_ce(pred: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy on logits ``[B, C]`` against class indices ``[B]`` (NaN = missing)."""
    mask = ~torch.isnan(target)
    if not bool(mask.any()):
        return _empty(pred)
    return F.cross_entropy(pred[mask], target[mask].long())


def masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the labelled entries."""
    mask = ~torch.isnan(target)
    if not bool(mask.any()):
        return _empty(pred)
    return F.mse_loss(pred[mask], target[mask])


def masked_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over the labelled entries."""
    mask = ~torch.isnan(target)
    if not bool(mask.any()):
        return _empty(pred)
    return F.l1_loss(pred[mask], target[mask])


def masked_huber(pred: Tensor, target: Tensor) -> Tensor:
    """Huber (smooth L1, δ = 1) over the labelled entries."""
    mask = ~torch.isnan(target)
    if not bool(mask.any()):
        return _empty(pred)
    return F.smooth_l1_loss(pred[mask], target[mask])


LOSSES: dict[str, LossFn] = {
    "bce": masked_bce,
    "ce": masked_ce,
    "mse": masked_mse,
    "l1": masked_l1,
    "huber": masked_huber,
}
