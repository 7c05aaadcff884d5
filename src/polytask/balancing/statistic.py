"""Step 1 of 3: compute the statistic (per-task gradients, their Gramian, one layer's norms).

Two places to measure the per-task gradients ``g_k``:

* ``exact``: gradients of every shared parameter — the Jacobian ``J ∈ R^{m×n}`` over the shared
  parameters, kept as one ``[m, numel]`` block per parameter (never concatenated; the Gramian is
  the sum of the blocks' Gramians).
* ``features``: gradients with respect to the shared representation ``Z`` (MGDA-UB, Sener &
  Koltun 2018): ``J ∈ R^{m×|Z|}``. The trunk then receives ONE backward of ``Σ_k w_k ∂L_k/∂Z``.

Fast path in ``features`` mode: when every consumer of a 2-D ``Z`` in the graph is a linear map
(``nn.Linear``: ``Y_c = Z A_cᵀ + b``, e.g. one stacked head ``Linear(d, K)``), then
``∂L_k/∂Z = R_k A`` with ``R_k = ∂L_k/∂Y`` (``[B, H]``, one batched backward through the loss ops
only) and ``A`` the stacked ``A_c``, so ``G = R (A Aᵀ) Rᵀ`` costs ``O(m B H²+ m² B H)`` instead of
``O(m² B d)``, and the rows are never formed unless a method needs the Jacobian.

Disjoint outputs (the usual case: each task's loss reads only its own columns of ``Y``, e.g. one
stacked head with a column per task): with ``S_k`` the columns task ``k`` touches, pairwise
disjoint, and ``P ∈ {0,1}^{m×H}`` their indicator, ``R_k = R_Σ diag(P_k)`` where
``R_Σ = Σ_k R_k`` (``[B, H]``), so ``G = P ((R_Σᵀ R_Σ) ⊙ A Aᵀ) Pᵀ`` — ``O(B H² + m H²)`` — and
``Σ_k w_k ∂L_k/∂Z = (R_Σ diag(Pᵀ w)) A``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.autograd.graph import GradientEdge

from polytask._core import NonFiniteLossError, PolytaskError, all_finite
from polytask.balancing.columns import Columns, owner_matrix

# autograd node → (index of Z among next_functions, saved attribute holding Aᵀ)
_LINEAR_NODES = {"AddmmBackward0": (1, "_saved_mat2"), "MmBackward0": (0, "_saved_mat2")}


@dataclass
class TaskGradients:
    """Per-task gradients of the measured tensors, kept for the apply step."""

    targets: list[Tensor]
    """Shared parameters (``exact``) or ``[features]`` (``features``)."""
    heads: list[Tensor]
    """Every other leaf the losses depend on (task heads, ...)."""
    head_grads: list[Tensor]
    """Plain (unweighted, summed over tasks) gradients of ``heads``."""
    features_mode: bool
    blocks: list[Tensor] = field(default_factory=list)
    """``[m, numel]`` per-task gradients of each target (empty on the factored path)."""
    factor: tuple[Tensor | None, Tensor] | None = None
    """``(R [m, B, H], A [H, d])`` with ``∂L_k/∂Z = R_k A`` (factored ``features`` path); ``R`` is
    None when the columns were declared (then it is ``R_Σ diag P_k``, formed only if asked)."""
    support: Tensor | None = None
    """``P [m, H]`` (0/1) when the tasks' columns of ``Y`` are disjoint (then ``R_k = R_Σ diag P_k``)."""
    r_sum: Tensor | None = None
    """``R_Σ = Σ_k R_k`` (``[B, H]``), set with ``support``."""

    def __post_init__(self) -> None:
        if self.factor is not None and self.support is None:
            r = self.factor[0]
            assert r is not None, "declared columns come with support and r_sum"
            touched = (r.new_ones(r.shape[1]) @ r.abs()) > 0  # [m, H]: column mass per task
            if bool((touched.sum(0) <= 1).all()):
                self.support, self.r_sum = touched.to(r.dtype), r.sum(0)

    def gramian(self) -> Tensor:
        """``J Jᵀ`` (``[m, m]``), symmetrised."""
        if self.factor is not None and self.support is not None and self.r_sum is not None:
            a, r_sum = self.factor[1], self.r_sum
            g = self.support @ ((r_sum.T @ r_sum) * (a @ a.T)) @ self.support.T
        elif self.factor is not None:
            r, a = self._per_task_r(), self.factor[1]
            m, b, h = r.shape
            rm = (r.reshape(m * b, h) @ (a @ a.T)).reshape(m, -1)
            g = rm @ r.reshape(m, -1).T
        else:
            g = sum((blk @ blk.T for blk in self.blocks), torch.zeros(()))
            assert isinstance(g, Tensor)
        return (g + g.T) / 2

    def rows(self) -> Tensor:
        """The ``[m, n]`` Jacobian, materialised (only Jacobian methods ask for it)."""
        if self.factor is not None:
            r, a = self._per_task_r(), self.factor[1]
            m, b, h = r.shape
            return (r.reshape(m * b, h) @ a).reshape(m, -1)
        return torch.cat(self.blocks, dim=1)

    def _per_task_r(self) -> Tensor:
        assert self.factor is not None
        r = self.factor[0]
        if r is None:
            assert self.support is not None and self.r_sum is not None
            r = self.r_sum[None] * self.support[:, None, :]
        return r

    def combine(self, weights: Tensor) -> list[Tensor]:
        """``Σ_k w_k g_k`` as one tensor per target."""
        if self.factor is not None and self.support is not None and self.r_sum is not None:
            a, r_sum = self.factor[1], self.r_sum
            return [(r_sum * (weights.to(r_sum.dtype) @ self.support)) @ a]
        if self.factor is not None:
            r, a = self._per_task_r(), self.factor[1]
            m, b, h = r.shape
            mixed = (weights.to(r.dtype) @ r.reshape(m, -1)).reshape(b, h) @ a
            return [mixed]
        return [weights.to(blk.dtype) @ blk for blk in self.blocks]

    def split(self, update: Tensor) -> list[Tensor]:
        """An explicit ``[n]`` update cut into one tensor per target."""
        return list(torch.split(update, [t.numel() for t in self.targets]))


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
    width = 0
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
        a_t = getattr(node, attr)
        out.append((node, a_t.T.detach()))
        width += a_t.shape[1]
    return out if width < features.shape[1] else None


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


def _declared(
    losses: Tensor, lin: list[tuple[object, Tensor]] | None, columns: Columns | None
) -> tuple[GradientEdge, Tensor, Tensor] | None:
    """``(edge into Y, A, P)`` when ``columns`` are declared for ONE linear consumer of Z."""
    if columns is None or lin is None or len(lin) != 1:
        return None
    (node, a), m = lin[0], losses.shape[0]
    p = owner_matrix(columns, m, a.shape[0], losses.dtype, losses.device)
    return GradientEdge(node, 0), a, p  # type: ignore[arg-type]


def task_gradients(
    losses: Tensor,
    shared: Sequence[Tensor],
    features: Tensor | None,
    features_mode: bool,
    columns: Columns | None = None,
) -> TaskGradients:
    """Per-task gradients of the targets and summed gradients of the heads."""
    targets, heads, consumers = _roles(losses, shared, features, features_mode)
    m = losses.shape[0]
    eye = torch.eye(m, dtype=losses.dtype, device=losses.device)
    lin = _linear_factor(targets[0], consumers) if features_mode else None
    declared = _declared(losses, lin, columns)
    if declared is not None:  # one ordinary backward: R_Σ and the heads' plain gradients
        edge, a, p = declared
        r_sum, *head_grads = _plain_grads(losses.sum(), [edge, *heads])
        return TaskGradients(
            targets, heads, head_grads, True, factor=(None, a), support=p, r_sum=r_sum
        )
    if lin is not None:
        edges = [GradientEdge(node, 0) for node, _ in lin]  # type: ignore[arg-type]
        r = torch.cat(batched_grads(losses, edges, eye, retain_graph=True), dim=-1)
        a = torch.cat([a_c for _, a_c in lin], dim=0)
        head_grads = _plain_grads(losses.sum(), heads)
        return TaskGradients(targets, heads, head_grads, True, factor=(r, a))
    grads = batched_grads(losses, targets + heads, eye, retain_graph=features_mode)
    blocks = [g.reshape(m, -1) for g in grads[: len(targets)]]
    head_grads = [g.sum(0) for g in grads[len(targets) :]]
    return TaskGradients(targets, heads, head_grads, features_mode, blocks=blocks)


def _factor_norms(r: Tensor, a: Tensor) -> Tensor:
    """``‖R_k A‖`` for every k: ``Σ_b R_k[b] (A Aᵀ) R_k[b]ᵀ`` (``O(m B H²)``), or from ``R_Σ`` and the
    column ownership ``P`` when the tasks' columns are disjoint and that is cheaper:
    ``‖R_k A‖² = (P ((R_Σᵀ R_Σ) ⊙ A Aᵀ))_k · P_k`` (``O(B H² + m H²)``)."""
    m, _, h = r.shape
    if m * h <= 64:  # small: the direct form has the fewest ops
        return ((r @ (a @ a.T)) * r).sum(dim=(1, 2)).clamp_min(0).sqrt()
    own = (r.abs().sum(1) > 0).to(r.dtype)  # [m, H]
    if not bool((own.sum(0) <= 1).all()):
        return ((r @ (a @ a.T)) * r).sum(dim=(1, 2)).clamp_min(0).sqrt()
    return _owned_norms(r.sum(0), a, own)


def _owned_norms(r_sum: Tensor, a: Tensor, own: Tensor) -> Tensor:
    """``‖R_Σ diag(P_k) A‖`` for every k: the diagonal of ``P ((R_Σᵀ R_Σ) ⊙ A Aᵀ) Pᵀ``."""
    return (((own @ ((r_sum.T @ r_sum) * (a @ a.T))) * own).sum(1)).clamp_min(0).sqrt()


def layer_grad_norms(
    losses: Tensor,
    shared: Sequence[Tensor],
    features: Tensor | None,
    features_mode: bool,
    columns: Columns | None = None,
) -> Tensor:
    """``‖∂L_k/∂W‖`` for one layer: the features in ``features`` mode, else the last shared
    parameter. The graph is kept for the backward that follows."""
    norms = _layer_grad_norms(losses, shared, features, features_mode, columns)
    if not all_finite(norms):
        raise NonFiniteLossError("balancing: non-finite gradient norm of the GradNorm layer")
    return norms


def _layer_grad_norms(
    losses: Tensor,
    shared: Sequence[Tensor],
    features: Tensor | None,
    features_mode: bool,
    columns: Columns | None,
) -> Tensor:
    m = losses.shape[0]
    if features_mode:
        if features is None:
            raise PolytaskError("balancing: mode 'features' needs `features=` (the shared output)")
        layer = features
        lin = (
            _linear_factor(features, _walk([losses], features)[1])
            if features.requires_grad
            else None
        )
        declared = _declared(losses, lin, columns)
        if declared is not None:  # one ordinary backward to Y gives R_Σ
            edge, a, p = declared
            (r_sum,) = _plain_grads(losses.sum(), [edge])
            return _owned_norms(r_sum, a, p)
        if lin is not None:  # ‖R_k A‖² = G_kk of the factored Gramian (cheap when disjoint)
            edges = [GradientEdge(node, 0) for node, _ in lin]  # type: ignore[arg-type]
            r = torch.cat(batched_grads(losses, edges, _eye(losses), retain_graph=True), dim=-1)
            return _factor_norms(r, torch.cat([a_c for _, a_c in lin], dim=0))
    else:
        params = [p for p in shared if p.requires_grad]
        if not params:
            raise PolytaskError("balancing: `shared_params` is empty or none requires grad")
        layer = params[-1]
    (g,) = batched_grads(losses, [layer], _eye(losses), retain_graph=True)
    return g.reshape(m, -1).norm(dim=1)


def _eye(losses: Tensor) -> Tensor:
    return torch.eye(losses.shape[0], dtype=losses.dtype, device=losses.device)
