"""Step 1 of 3: compute the statistic (per-task gradients, their Gramian, one layer's norms).

Two places to measure the per-task gradients ``g_k``:

* ``exact``: gradients of every shared parameter, flattened and concatenated — the Jacobian
  ``J ∈ R^{m×n}`` over the shared parameters.
* ``features``: gradients with respect to the shared representation ``Z`` (MGDA-UB, Sener &
  Koltun 2018): ``J ∈ R^{m×|Z|}``. The trunk then receives ONE backward of ``Σ_k w_k ∂L_k/∂Z``.

All task rows come from one batched backward (``is_grads_batched``) that also yields the task
heads' gradients, so the heads are traversed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import NonFiniteLossError, PolytaskError


@dataclass
class TaskGradients:
    """Per-task gradients of the measured tensors, kept for the apply step."""

    rows: Tensor
    """``[m, n]`` per-task gradients of ``targets`` (flattened, concatenated)."""
    targets: list[Tensor]
    """Shared parameters (``exact``) or ``[features]`` (``features``)."""
    heads: list[Tensor]
    """Every other leaf the losses depend on (task heads, ...)."""
    head_grads: list[Tensor]
    """Plain (unweighted, summed over tasks) gradients of ``heads``."""
    features_mode: bool


def as_loss_vector(losses: Tensor | Sequence[Tensor]) -> Tensor:
    """Stack ``losses`` into a 1-D ``[m]`` tensor; reject K = 1 and non-finite values."""
    if isinstance(losses, Tensor):
        vec = losses
    else:
        if len(losses) == 0:
            raise PolytaskError("balancing: `losses` is empty; expected one loss per task")
        vec = torch.stack([torch.as_tensor(x).reshape(()) for x in losses])
    if vec.dim() != 1:
        raise PolytaskError(f"balancing: `losses` must be 1-D [m], got shape {tuple(vec.shape)}")
    if vec.shape[0] < 2:
        raise PolytaskError(
            f"balancing: needs at least 2 task losses, got {vec.shape[0]}; use a plain backward"
        )
    if not bool(torch.isfinite(vec.detach()).all()):
        bad = [
            i for i, v in enumerate(vec.detach().tolist()) if not torch.isfinite(torch.tensor(v))
        ]
        raise NonFiniteLossError(f"balancing: non-finite loss for task index(es) {bad}")
    return vec


def graph_leaves(roots: Sequence[Tensor], stop: Tensor | None = None) -> list[Tensor]:
    """Leaf tensors requiring grad that ``roots`` depend on, not looking past ``stop``."""
    stop_fn = stop.grad_fn if stop is not None else None
    seen: set[object] = set()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    out: list[Tensor] = []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen or fn is stop_fn:
            continue
        seen.add(fn)
        var = getattr(fn, "variable", None)
        if isinstance(var, Tensor):
            if stop is None or var is not stop:
                out.append(var)
            continue
        stack.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)
    return out


def batched_grads(
    losses: Tensor, inputs: Sequence[Tensor], grad_outputs: Tensor, retain_graph: bool
) -> list[Tensor]:
    """``[r, *input.shape]`` gradients of ``grad_outputs[i] · losses`` for every row ``i``."""
    grads: tuple[Tensor | None, ...]
    try:
        grads = torch.autograd.grad(
            losses,
            list(inputs),
            grad_outputs=grad_outputs,
            is_grads_batched=True,
            retain_graph=True if retain_graph else None,
            allow_unused=True,
        )
    except RuntimeError:  # an op without a batching rule: fall back to one backward per row
        per_row = [
            torch.autograd.grad(losses, list(inputs), g, retain_graph=True, allow_unused=True)
            for g in grad_outputs
        ]
        grads = tuple(
            torch.stack([r[j] if r[j] is not None else torch.zeros_like(x) for r in per_row])
            if any(r[j] is not None for r in per_row)
            else None
            for j, x in enumerate(inputs)
        )
    r = grad_outputs.shape[0]
    return [
        g if g is not None else torch.zeros((r, *x.shape), dtype=x.dtype, device=x.device)
        for g, x in zip(grads, inputs)
    ]


def _split_roles(
    losses: Tensor, shared: Sequence[Tensor], features: Tensor | None, features_mode: bool
) -> tuple[list[Tensor], list[Tensor]]:
    if features_mode:
        if features is None:
            raise PolytaskError("balancing: mode 'features' needs `features=` (the shared output)")
        if not features.requires_grad:
            raise PolytaskError(
                "balancing: `features` does not require grad; pass the trunk output"
            )
        targets = [features]
        ids = {id(p) for p in shared} | {id(features)}
        heads = [p for p in graph_leaves([losses], stop=features) if id(p) not in ids]
    else:
        targets = [p for p in shared if p.requires_grad]
        if not targets:
            raise PolytaskError("balancing: `shared_params` is empty or none requires grad")
        ids = {id(p) for p in targets}
        heads = [p for p in graph_leaves([losses]) if id(p) not in ids]
    return targets, heads


def task_gradients(
    losses: Tensor,
    shared: Sequence[Tensor],
    features: Tensor | None,
    features_mode: bool,
) -> TaskGradients:
    """One batched backward: per-task rows of the targets, summed gradients of the heads."""
    targets, heads = _split_roles(losses, shared, features, features_mode)
    m = losses.shape[0]
    eye = torch.eye(m, dtype=losses.dtype, device=losses.device)
    grads = batched_grads(losses, targets + heads, eye, retain_graph=features_mode)
    rows = torch.cat([g.reshape(m, -1) for g in grads[: len(targets)]], dim=1)
    if not bool(torch.isfinite(rows).all()):
        bad = sorted({int(i) for i in (~torch.isfinite(rows)).nonzero()[:, 0].tolist()})
        raise NonFiniteLossError(f"balancing: non-finite gradient for task index(es) {bad}")
    head_grads = [g.sum(0) for g in grads[len(targets) :]]
    return TaskGradients(rows, targets, heads, head_grads, features_mode)


def gramian(rows: Tensor) -> Tensor:
    """``J Jᵀ`` as one matmul, symmetrised."""
    g = rows @ rows.T
    return (g + g.T) / 2


def layer_grad_norms(
    losses: Tensor, shared: Sequence[Tensor], features: Tensor | None, features_mode: bool
) -> Tensor:
    """``‖∂L_k/∂W‖`` for one layer: the features in ``features`` mode, else the last shared
    parameter. The graph is kept for the backward that follows."""
    if features_mode:
        if features is None:
            raise PolytaskError("balancing: mode 'features' needs `features=` (the shared output)")
        layer = features
    else:
        params = [p for p in shared if p.requires_grad]
        if not params:
            raise PolytaskError("balancing: `shared_params` is empty or none requires grad")
        layer = params[-1]
    m = losses.shape[0]
    eye = torch.eye(m, dtype=losses.dtype, device=losses.device)
    (g,) = batched_grads(losses, [layer], eye, retain_graph=True)
    norms = g.reshape(m, -1).norm(dim=1)
    if not bool(torch.isfinite(norms).all()):
        raise NonFiniteLossError("balancing: non-finite gradient norm of the GradNorm layer")
    return norms
