"""One multi-task training step, usable in a hand-written loop.

``train_step`` = forward every group of the batch → per-task masked losses → backward (plain sum,
or a balancing method through a :class:`~polytask.balancing.Balancer`) → gradient clipping →
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

from polytask._core import NonFiniteLossError, module_device
from polytask.models import MultiTaskModel
from polytask.tasks import TaskSet
from polytask.tasks.data import Group


class BalancerLike(Protocol):
    def backward(
        self,
        losses: Tensor,
        shared_params: Sequence[nn.Parameter],
        *,
        features: Tensor | None = None,
        columns: Sequence[range] | None = None,
    ) -> Any: ...


@dataclass
class StepOutput:
    """What one step produced: per-task losses (floats), the total, and balancing statistics."""

    losses: dict[str, float]
    total: float
    grad_norm: float
    weights: list[float] | None = None
    gramian: Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def compute_losses(
    model: MultiTaskModel, batch: Sequence[Group], taskset: TaskSet
) -> tuple[dict[str, Tensor], list[Tensor]]:
    """Per-task losses (task weight applied) and the shared features of each group."""
    losses: dict[str, Tensor] = {}
    features: list[Tensor] = []
    for group in batch:
        z = model.forward_features(group.inputs)
        features.append(z)
        names = [n for n in taskset.names if n in group.targets]
        outputs = model.forward_heads(z, names)
        for n in names:
            task = taskset[n]
            loss = task.compute_loss(outputs[n], group.targets[n])
            losses[n] = loss * task.weight if task.weight != 1.0 else loss
    return losses, features


def check_finite(losses: dict[str, Tensor], step: int) -> dict[str, float]:
    """The losses as floats (one device sync for all of them); NaN/Inf is an error."""
    values = torch.stack([v.detach().reshape(()) for v in losses.values()]).tolist()
    for name, value in zip(losses, values):
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"step {step}: the loss of task {name!r} is {value}; training stopped"
            )
    return dict(zip(losses, values))


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
    the static task weights). Raises :class:`NonFiniteLossError` before touching the parameters
    when a loss or the gradient norm is NaN/Inf. ``after_backward`` sees the optimizer's
    parameters once their gradients are formed (data-parallel averaging plugs in here).
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    device = module_device(model)
    batch = [g.to(device) for g in batch]
    losses, features = compute_losses(model, batch, taskset)
    out = StepOutput(check_finite(losses, step), 0.0, 0.0)
    out.total = sum(out.losses.values())
    if balancer is None:
        torch.stack(list(losses.values())).sum().backward()
    else:
        names = [n for n in taskset.names if n in losses]
        vector = torch.stack([losses[n] for n in names])
        one = len(features) == 1
        result = balancer.backward(
            vector,
            model.shared_parameters(),
            features=features[0] if one else None,
            columns=model.head_columns(names) if one else None,
        )
        out.weights = [float(w) for w in result.weights.tolist()]
        out.gramian = result.gramian
        out.extra = result.log_dict()
    if after_backward is not None:
        after_backward([p for group in optimizer.param_groups for p in group["params"]])
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else math.inf)
    out.grad_norm = float(norm)
    if not math.isfinite(out.grad_norm):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteLossError(
            f"step {step}: the gradient norm is {out.grad_norm}; training stopped"
        )
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return out
