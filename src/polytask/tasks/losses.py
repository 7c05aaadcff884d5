"""Per-task losses that mask missing labels.

Missing labels are NaN in the target tensor. They are removed before the loss is computed —
never treated as negatives or zeros. A batch in which a task has no label at all gives a zero
loss that is still connected to the graph (so every head receives a, zero, gradient).

Formulas, with ``M`` the set of labelled entries (``|M| > 0``):

* ``bce``: ``1/|M| Σ_{i∈M} −[y_i log σ(z_i) + (1−y_i) log(1−σ(z_i))]`` (binary, multilabel)
* ``ce``: ``1/|M| Σ_{i∈M} −log softmax(z_i)[y_i]`` (multiclass)
* ``mse``: ``1/|M| Σ_{i∈M} (z_i − y_i)²``;  ``l1``: ``1/|M| Σ |z_i − y_i|``;
  ``huber``: smooth-L1 with ``δ = 1`` (regression, reconstruction)
* ``info_nce``: NT-Xent (contrastive; see :func:`info_nce`)
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


def info_nce(pred: Tensor, target: Tensor, temperature: float = 0.1) -> Tensor:
    r"""InfoNCE / NT-Xent over a batch of ``2B`` embeddings with known positive partners.

    CPC (van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding")
    in the normalised-temperature form of SimCLR (Chen et al. 2020, eq. 1). With
    :math:`z_i = p_i / \lVert p_i \rVert` the rows of ``pred``, :math:`s_{ik} = z_i \cdot z_k` the
    cosine similarity, :math:`\tau` the temperature and :math:`a(i)` the partner index
    ``target[i]``:

    .. math::

        \ell_i = -\log \frac{\exp(s_{i\,a(i)}/\tau)}{\sum_{k \ne i} \exp(s_{ik}/\tau)},
        \qquad L = \frac{1}{|M|} \sum_{i \in M} \ell_i

    with :math:`M` the rows whose target is not NaN. Every row (NaN target or not) is a negative
    for the others. With two views of ``B`` rows stacked as ``[view1; view2]`` the target is
    ``[B, ..., 2B-1, 0, ..., B-1]``. ``pred`` is ``[N, d]``, ``target`` ``[N]`` float indices.
    """
    mask = ~torch.isnan(target)
    if not bool(mask.any()):
        return _empty(pred)
    z = F.normalize(pred.float(), dim=-1)
    sim = (z @ z.T) / temperature
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    sim = sim.masked_fill(eye, float("-inf"))
    return F.cross_entropy(sim[mask], target[mask].long())


LOSSES: dict[str, LossFn] = {
    "bce": masked_bce,
    "ce": masked_ce,
    "mse": masked_mse,
    "l1": masked_l1,
    "huber": masked_huber,
    "info_nce": info_nce,
}
