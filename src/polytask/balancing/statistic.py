"""Step 1 of 3: compute the statistic (per-task gradients, their Gramian, one layer's norms).

Two places to measure the per-task gradients ``g_k``:

* ``exact``: gradients of every shared parameter — the Jacobian ``J ∈ R^{m×n}`` over the shared
  parameters, kept as one ``[m, numel]`` block per parameter (never concatenated; the Gramian is
  the sum of the blocks' Gramians).
* ``features``: gradients with respect to the shared representation ``Z`` (MGDA-UB, Sener &
  Koltun 2018): ``J ∈ R^{m×|Z|}``. The trunk then receives ONE backward of ``Σ_k w_k ∂L_k/∂Z``.

In ``features`` mode, when every consumer of a 2-D ``Z`` (``[B, d]``) is a linear map (one
stacked head ``Y = Z Aᵀ + b``, ``A [H, d]``), ``∂L_k/∂Z = R_k A`` with ``R_k = ∂L_k/∂Y``, and the
form is chosen by its cost in multiply-adds (:func:`features_plan`, :mod:`.task_gradients`):

=================  =======================================  ==================================
form               needs                                    Gramian cost
=================  =======================================  ==================================
owned columns      columns declared (``columns=``), or      ``B H² + d H²`` (+ one backward)
                   found disjoint in ``R``
factored           linear consumers                         ``m B H² + m² B H + d H²``
explicit rows      nothing                                  ``m B H d + m² B d``
=================  =======================================  ==================================

so a 617-task head on a 512-wide trunk takes the owned-columns form (``H > d`` is no obstacle).
Only the tasks of ``index`` (the present ones) get rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.autograd.graph import GradientEdge

from polytask._core import NonFiniteLossError, PolytaskError, all_finite
from polytask.balancing.columns import Columns, declared_owners, present_owners
from polytask.balancing.task_gradients import TaskGradients

# autograd node → (index of Z among next_functions, saved attribute holding Aᵀ)
_LINEAR_NODES = {"AddmmBackward0": (1, "_saved_mat2"), "MmBackward0": (0, "_saved_mat2")}


def as_loss_vector(losses: Tensor | Sequence[Tensor], check: bool = True) -> Tensor:
    """Stack ``losses`` into a 1-D ``[m]`` tensor; reject K = 1 and (``check``) non-finite
    values."""
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
    if check and not all_finite(vec.detach()):
        bad = (~torch.isfinite(vec.detach())).nonzero()[:, 0].tolist()
        raise NonFiniteLossError(f"balancing: non-finite loss for task index(es) {bad}")
    return vec


def _walk(roots: Sequence[Tensor], stop: Tensor | None) -> tuple[list[Tensor], list[object]]:
    """Leaves requiring grad that ``roots`` depend on (not looking past ``stop``), and the graph
    nodes that consume ``stop`` directly."""
    stop_fn = stop.grad_fn if stop is not None else None
    stop_edge = (stop_fn, stop.output_nr) if stop is not None and stop_fn is not None else None
    seen: set[object] = set()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    leaves: list[Tensor] = []
    consumers: list[object] = []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen or fn is stop_fn:
            continue
        seen.add(fn)
        var = getattr(fn, "variable", None)
        if isinstance(var, Tensor):
            if stop is None or var is not stop:
                leaves.append(var)
            continue
        for nxt, nr in fn.next_functions:
            if nxt is None:
                continue
            if stop_edge is not None and nxt is stop_edge[0] and nr == stop_edge[1]:
                consumers.append(fn)
            stack.append(nxt)
    return leaves, consumers


def graph_leaves(roots: Sequence[Tensor], stop: Tensor | None = None) -> list[Tensor]:
    """Leaf tensors requiring grad that ``roots`` depend on, not looking past ``stop``."""
    return _walk(roots, stop)[0]


def _linear_factor(features: Tensor, consumers: list[object]) -> list[tuple[object, Tensor]] | None:
    """``[(node, A_c)]`` when every consumer of ``features`` is ``Z A_cᵀ (+ b)``, else None."""
    if features.dim() != 2 or not consumers:
        return None
    out = []
    for node in consumers:
        spec = _LINEAR_NODES.get(type(node).__name__)
        if spec is None:
            return None
        z_pos, attr = spec
        nxt, nr = node.next_functions[z_pos]  # type: ignore[attr-defined]
        if nxt is not features.grad_fn or nr != features.output_nr:
            return None
        if float(getattr(node, "_saved_alpha", 1)) != 1.0:
            return None
        out.append((node, getattr(node, attr).T.detach()))
    return out


def features_plan(m: int, b: int, d: int, h: int, declared: bool) -> str:
    """The cheapest form of ``features`` mode's statistic: ``"owned"``, ``"factored"`` or
    ``"explicit"`` (costs in the module's table; ``h`` = 0: no linear consumers)."""
    if h == 0:
        return "explicit"
    costs = {"explicit": m * b * h * d + m * m * b * d, "factored": m * b * h * h + m * m * b * h}
    costs["factored"] += d * h * h
    if declared:
        costs["owned"] = b * h * h + d * h * h
    return min(costs, key=lambda k: costs[k])


def _select(losses: Tensor, index: Tensor | None) -> Tensor:
    """``[m_p, m]`` rows of the identity for the tasks of ``index`` (every task when None)."""
    eye = torch.eye(losses.shape[0], dtype=losses.dtype, device=losses.device)
    return eye if index is None else eye[index.to(losses.device)]


def _per_task_r(losses: Tensor, lin: list[tuple[object, Tensor]], rows: Tensor) -> Tensor:
    edges = [GradientEdge(node, 0) for node, _ in lin]  # type: ignore[arg-type]
    return torch.cat(batched_grads(losses, edges, rows, retain_graph=True), dim=-1)


def _linear_plan(
    losses: Tensor, z: Tensor, consumers: list[object], columns: Columns | None
) -> tuple[str, list[tuple[object, Tensor]] | None]:
    lin = _linear_factor(z, consumers)
    if lin is None:
        return "explicit", None
    h = sum(int(a.shape[0]) for _, a in lin)
    declared = columns is not None and len(lin) == 1
    m, (b, d) = int(losses.shape[0]), z.shape
    return features_plan(m, int(b), int(d), h, declared), lin


def batched_grads(
    losses: Tensor,
    inputs: Sequence[Tensor | GradientEdge],
    grad_outputs: Tensor,
    retain_graph: bool,
) -> list[Tensor]:
    """``[r, *input.shape]`` gradients of ``grad_outputs[i] · losses`` for every row ``i``."""
    grads: tuple[Tensor | None, ...]
    ins: Any = list(inputs)
    try:
        grads = torch.autograd.grad(
            losses,
            ins,
            grad_outputs=grad_outputs,
            is_grads_batched=True,
            retain_graph=True if retain_graph else None,
            allow_unused=True,
        )
    except RuntimeError:  # an op without a batching rule: fall back to one backward per row
        per_row = [
            torch.autograd.grad(losses, ins, g, retain_graph=True, allow_unused=True)
            for g in grad_outputs
        ]
        grads = tuple(_stack_rows([r[j] for r in per_row]) for j in range(len(inputs)))
    out = []
    for g, x in zip(grads, inputs):
        if g is None:
            assert isinstance(x, Tensor)
            g = torch.zeros((grad_outputs.shape[0], *x.shape), dtype=x.dtype, device=x.device)
        out.append(g)
    return out


def _stack_rows(rows: list[Tensor | None]) -> Tensor | None:
    """Stack per-row gradients, zeros where a row did not reach the input (None if none did)."""
    some = next((r for r in rows if r is not None), None)
    if some is None:
        return None
    return torch.stack([r if r is not None else torch.zeros_like(some) for r in rows])


def _roles(
    losses: Tensor, shared: Sequence[Tensor], features: Tensor | None, features_mode: bool
) -> tuple[list[Tensor], list[Tensor], list[object]]:
    if features_mode:
        if features is None:
            raise PolytaskError("balancing: mode 'features' needs `features=` (the shared output)")
        if not features.requires_grad:
            raise PolytaskError(
                "balancing: `features` does not require grad; pass the trunk output"
            )
        ids = {id(p) for p in shared} | {id(features)}
        leaves, consumers = _walk([losses], features)
        return [features], [p for p in leaves if id(p) not in ids], consumers
    targets = [p for p in shared if p.requires_grad]
    if not targets:
        raise PolytaskError("balancing: `shared_params` is empty or none requires grad")
    ids = {id(p) for p in targets}
    return targets, [p for p in graph_leaves([losses]) if id(p) not in ids], []


def check_gramian(g: Tensor) -> None:
    """A NaN/Inf anywhere in task k's gradient makes ``G_kk`` non-finite: one cheap check."""
    bad = (~torch.isfinite(g.diagonal())).nonzero()[:, 0].tolist()
    if bad:
        raise NonFiniteLossError(f"balancing: non-finite gradient for task index(es) {bad}")


def _plain_grads(total: Tensor, inputs: Sequence[Tensor | GradientEdge]) -> list[Tensor]:
    """Gradients of the scalar ``total`` (zeros where unused); the graph is kept."""
    if not inputs:
        return []
    ins: Any = list(inputs)
    grads = torch.autograd.grad(total, ins, retain_graph=True, allow_unused=True)
    return [
        g if g is not None else torch.zeros_like(x)  # type: ignore[arg-type]
        for g, x in zip(grads, inputs)
    ]


def _factored(
    losses: Tensor,
    targets: list[Tensor],
    heads: list[Tensor],
    consumers: list[object],
    columns: Columns | None,
    index: Tensor | None,
) -> TaskGradients | None:
    """``features`` mode's owned-columns or factored form, when cheaper than explicit rows."""
    plan, lin = _linear_plan(losses, targets[0], consumers, columns)
    if plan == "owned" and lin is not None and columns is not None:  # ONE ordinary backward
        (node, a), m = lin[0], int(losses.shape[0])
        owners = present_owners(declared_owners(columns, m, a.shape[0], losses.device), index)
        edge = GradientEdge(node, 0)  # type: ignore[arg-type]
        r_sum, *head_grads = _plain_grads(losses.sum(), [edge, *heads])
        return TaskGradients(
            targets, heads, head_grads, True, a=a, owners=owners, r_sum=r_sum.to(a.dtype)
        )
    if plan == "factored" and lin is not None:
        r = _per_task_r(losses, lin, _select(losses, index))
        a = torch.cat([a_c for _, a_c in lin], dim=0)
        return TaskGradients(targets, heads, _plain_grads(losses.sum(), heads), True, a=a, r=r)
    return None


def task_gradients(
    losses: Tensor,
    shared: Sequence[Tensor],
    features: Tensor | None,
    features_mode: bool,
    columns: Columns | None = None,
    index: Tensor | None = None,
) -> TaskGradients:
    """Per-task gradients of the targets for the tasks of ``index`` (all when None), and the
    summed gradients of the heads."""
    targets, heads, consumers = _roles(losses, shared, features, features_mode)
    if features_mode:
        tg = _factored(losses, targets, heads, consumers, columns, index)
        if tg is not None:
            return tg
    rows = _select(losses, index)
    grads = batched_grads(losses, targets + heads, rows, retain_graph=features_mode)
    blocks = [g.reshape(rows.shape[0], -1) for g in grads[: len(targets)]]
    head_grads = [g.sum(0) for g in grads[len(targets) :]]
    return TaskGradients(targets, heads, head_grads, features_mode, blocks=blocks)


def layer_grad_norms(
    losses: Tensor,
    shared: Sequence[Tensor],
    features: Tensor | None,
    features_mode: bool,
    columns: Columns | None = None,
    index: Tensor | None = None,
) -> Tensor:
    """``‖∂L_k/∂W‖`` for one layer and the tasks of ``index``: the features in ``features``
    mode, else the last shared parameter. The graph is kept for the backward that follows."""
    rows = _select(losses, index)
    if features_mode:
        targets, _, consumers = _roles(losses, shared, features, True)
        tg = _factored(losses, targets, [], consumers, columns, index)
        layer = targets[0]
    else:
        params = [p for p in shared if p.requires_grad]
        if not params:
            raise PolytaskError("balancing: `shared_params` is empty or none requires grad")
        tg, layer = None, params[-1]
    if tg is not None:
        norms = tg.norms()
    else:
        (g,) = batched_grads(losses, [layer], rows, retain_graph=True)
        norms = g.reshape(rows.shape[0], -1).norm(dim=1)
    if not all_finite(norms):
        raise NonFiniteLossError("balancing: non-finite gradient norm of the GradNorm layer")
    return norms
