"""Step 3 of 3: write the decided update into ``.grad``.

Head convention: with a gradient method (Gramian weighting or Jacobian aggregator) only the shared
part (shared parameters, or the trunk behind the features) receives the combined update; every
other parameter the losses depend on (task heads) receives its plain, unweighted gradient
``Σ_k ∂L_k/∂θ_head``. With a loss weighting the weighted objective ``Σ_k w_k L_k (+ regularizer)``
is back-propagated through everything, as the papers define it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from polytask.balancing.statistic import batched_grads, graph_leaves
from polytask.balancing.task_gradients import TaskGradients


def accumulate(params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
    """``p.grad += g`` (``g`` becomes ``.grad`` where it is None: callers pass fresh tensors)."""
    for p, g in zip(params, grads):
        g = g.reshape(p.shape).to(p.dtype)
        if p.grad is None:
            p.grad = g if g.is_contiguous() else g.contiguous()
        else:
            p.grad.add_(g)


def apply_update(tg: TaskGradients, pieces: Sequence[Tensor]) -> None:
    """Shared part gets the update (one piece per target); heads their plain gradients."""
    accumulate(tg.heads, tg.head_grads)
    if tg.features_mode:
        (features,) = tg.targets
        (piece,) = pieces
        features.backward(piece.reshape(features.shape).to(features.dtype))
        return
    accumulate(tg.targets, pieces)


def apply_weighted_loss(losses: Tensor, weights: Tensor, regularizer: Tensor | None) -> None:
    """Backward of ``Σ_k w_k L_k (+ regularizer)`` through every parameter."""
    total = (weights.to(losses.dtype) * losses).sum()
    if regularizer is not None:
        total = total + regularizer
    total.backward()


def apply_weights(
    losses: Tensor,
    shared: Sequence[Tensor],
    features: Tensor | None,
    features_mode: bool,
    weights: Tensor,
) -> None:
    """Apply given weights without any per-task statistic (the reuse steps of ``every: N``).

    One backward with two batched rows ``[w, 1]``: the shared part takes row ``w``, the heads
    row ``1``; in ``features`` mode the trunk is then traversed once with ``Σ_k w_k ∂L_k/∂Z``.
    """
    rows = torch.stack([weights.to(losses.dtype), torch.ones_like(losses)])
    if features_mode:
        assert features is not None
        ids = {id(p) for p in shared} | {id(features)}
        heads = [p for p in graph_leaves([losses], stop=features) if id(p) not in ids]
        grads = batched_grads(losses, [features, *heads], rows, retain_graph=True)
        accumulate(heads, [g[1] for g in grads[1:]])
        features.backward(grads[0][0])
        return
    targets = [p for p in shared if p.requires_grad]
    ids = {id(p) for p in targets}
    heads = [p for p in graph_leaves([losses]) if id(p) not in ids]
    grads = batched_grads(losses, targets + heads, rows, retain_graph=False)
    accumulate(targets, [g[0] for g in grads[: len(targets)]])
    accumulate(heads, [g[1] for g in grads[len(targets) :]])
