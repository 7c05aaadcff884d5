"""One multi-task training step, usable in a hand-written loop.

``train_step`` = forward every group of the batch → the ``[K]`` masked task losses and labelled-row
counts (:mod:`polytask.train.task_losses`) → backward (plain sum, or a balancing method through a
:class:`~polytask.balancing.Balancer`, told which tasks are present) → gradient norms (all
parameters, and the shared ones: a zero shared update is flagged) → gradient clipping →
optimizer (and scheduler) step. The balancing seam is the ``balancer`` argument: whatever method
it holds decides, from what it declares it needs, how the gradients are formed; this code never
looks at a method's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.nn.utils import clip_grads_with_norm_, get_total_norm

from polytask._core import NonFiniteLossError, PolytaskError, module_device
from polytask.models import MultiTaskModel
from polytask.tasks import TaskSet
from polytask.tasks.data import Group
from polytask.train.task_losses import StepLosses, compute_losses, fed_tasks


class BalancerLike(Protocol):
    def backward(
        self,
        losses: Tensor,
        shared_params: Sequence[nn.Parameter],
        *,
        features: Tensor | None = None,
        columns: Sequence[range] | None = None,
        present: Tensor | None = None,
    ) -> Any: ...


@dataclass
class StepOutput:
    """What one step produced.

    ``losses``: the loss of each task this batch fed (floats, task-set order); ``present``: the
    labelled rows of every task in this batch (``[K]``, task-set order; 0 = absent);
    ``weights``: the balancer's ``[K]`` weights; ``shared_grad_norm``: the norm of the gradient of
    ``model.shared_parameters()`` after backward, before clipping; ``zero_update``: that norm is
    exactly 0 while a present task has a positive loss (the shared layers did not move).
    """

    losses: dict[str, float]
    total: float
    grad_norm: float
    weights: list[float] | None = None
    gramian: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    present: list[int] = field(default_factory=list)
    shared_grad_norm: float = math.nan
    zero_update: bool = False
    vanishing_update: bool = False
    """Set by the trainer: the shared update is a vanishing fraction of the run's largest."""


def check_finite(
    losses: Tensor, counts: Tensor, names: Sequence[str], step: int
) -> tuple[list[float], list[int]]:
    """The ``[K]`` losses as floats and the counts as ints (one device sync for both); a NaN/Inf
    loss is an error naming its task."""
    both = torch.cat([losses.detach().to(torch.float64), counts.to(torch.float64)]).tolist()
    values, present = both[: len(names)], [int(c) for c in both[len(names) :]]
    for name, value in zip(names, values):
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"step {step}: the loss of task {name!r} is {value}; training stopped"
            )
    return values, present


def _shared_ids(model: MultiTaskModel) -> set[int] | None:
    try:
        return {id(p) for p in model.shared_parameters()}
    except PolytaskError:  # nothing shared is trained (e.g. a frozen trunk): nothing to check
        return None


def grad_norms(params: Sequence[Tensor], shared: set[int] | None) -> tuple[Tensor, Tensor]:
    """``(total, shared)`` 2-norms of the gradients of ``params`` and of those in ``shared``
    (each tensor read once; ``shared`` None: NaN)."""
    if shared is None:
        total = get_total_norm([p.grad for p in params if p.grad is not None])
        return total, torch.full_like(total, math.nan)
    own = get_total_norm([p.grad for p in params if p.grad is not None and id(p) in shared])
    rest = get_total_norm([p.grad for p in params if p.grad is not None and id(p) not in shared])
    total = torch.linalg.vector_norm(torch.stack([own, rest.to(own.device)]))
    return total, own


def _balanced(
    model: MultiTaskModel, balancer: BalancerLike, parts: StepLosses, taskset: TaskSet,
    out: StepOutput,
) -> None:  # fmt: skip
    one = len(parts.features) == 1
    result = balancer.backward(
        parts.losses,
        model.shared_parameters(),
        features=parts.features[0] if one else None,
        columns=model.head_columns(taskset.names) if one else None,
        present=parts.counts,
    )
    out.extra = dict(result.log_dict())
    out.extra.pop("weights", None)
    out.weights = [float(w) for w in result.weights.tolist()]
    out.gramian = result.gramian


def train_step(
    model: MultiTaskModel,
    batch: Sequence[Group],
    taskset: TaskSet,
    optimizer: torch.optim.Optimizer,
    *,
    balancer: BalancerLike | None = None,
    grad_clip: float | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    step: int = 0,
    after_backward: Callable[[list[nn.Parameter]], None] | None = None,
) -> StepOutput:
    """Run one optimisation step on ``batch`` and return its losses and statistics.

    The batch is moved to the model's device (a no-op when it is already there).

    Without a ``balancer`` the update is the gradient of the plain sum ``Σ_k w_k L_k`` (``w_k``
    the static task weights). With one, it gets the ``[K]`` loss vector and the labelled-row
    counts as ``present=``. Raises :class:`NonFiniteLossError` before touching the parameters
    when a loss or the gradient norm is NaN/Inf. ``after_backward`` sees the optimizer's
    parameters once their gradients are formed (data-parallel averaging plugs in here).
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    fed = fed_tasks(batch, taskset)
    if not fed:
        raise PolytaskError(f"step {step}: the batch carries targets for none of the tasks")
    device = module_device(model)
    batch = [g.to(device) for g in batch]
    parts = compute_losses(model, batch, taskset)
    values, present = check_finite(parts.losses, parts.counts, taskset.names, step)
    position = {n: k for k, n in enumerate(taskset.names)}
    out = StepOutput({n: values[position[n]] for n in fed}, sum(values), 0.0, present=present)
    if balancer is None:
        parts.losses.sum().backward()
    else:
        _balanced(model, balancer, parts, taskset, out)
    if after_backward is not None:
        after_backward([p for group in optimizer.param_groups for p in group["params"]])
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    total, shared = grad_norms(params, _shared_ids(model))
    out.grad_norm, out.shared_grad_norm = torch.stack([total, shared.to(total.device)]).tolist()
    if not math.isfinite(out.grad_norm):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(
            f"step {step}: the gradient norm is {out.grad_norm}; training stopped"
        )
    out.zero_update = out.shared_grad_norm == 0.0 and any(
        c > 0 and v > 0 for c, v in zip(present, values)
    )
    if grad_clip:
        clip_grads_with_norm_(params, grad_clip, total)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return out
