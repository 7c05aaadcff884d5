"""Lookahead (TAG) affinity: how much a step on task ``i`` lowers the loss of task ``j``.

Fifty et al. 2021, "Efficiently Identifying Task Groupings for Multi-Task Learning" (TAG):

    Z(i -> j) = 1 - L_j(theta_s - lr * grad_{theta_s} L_i, theta_j) / L_j(theta_s, theta_j)

on one batch, where ``theta_s`` are the shared parameters and the task heads ``theta_j`` stay
fixed. ``Z > 0``: a plain SGD step on task ``i`` alone lowers task ``j``'s loss; ``Z < 0``: it
raises it. ``Z`` is not symmetric. Column ``j`` (``i != j``) does not change when ``L_j`` is
multiplied by a positive constant (the ratio cancels it).

Cost of one measurement: ``1 + m`` forward passes (one at ``theta``, one per lookahead) and
``m`` backward passes (one gradient per task), no optimizer state touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from polytask._core import PolytaskError
from polytask.affinity._validate import check_task_names

LossFn = Callable[[Callable[..., Any], Any], Tensor]
"""``loss_fn(forward, batch) -> Tensor[m]``: per-task losses; ``forward(*a, **kw)`` runs the
model with the parameters under evaluation (call it instead of ``model(...)``)."""


def _shared_names(
    model: nn.Module, shared_params: Iterable[str] | Mapping[str, Tensor]
) -> list[str]:
    names = list(shared_params.keys() if isinstance(shared_params, Mapping) else shared_params)
    params = dict(model.named_parameters())
    for n in names:
        if not isinstance(n, str):
            raise PolytaskError(
                f"lookahead_affinity: shared_params must be parameter names, got {n!r}"
            )
        if n not in params:
            raise PolytaskError(f"lookahead_affinity: '{n}' is not a parameter of the model")
    if not names:
        raise PolytaskError("lookahead_affinity: shared_params is empty")
    return names


def _losses(model: nn.Module, params: dict[str, Tensor], loss_fn: LossFn, batch: Any) -> Tensor:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return functional_call(model, params, args, kwargs)

    out = loss_fn(forward, batch)
    if not isinstance(out, Tensor) or out.ndim != 1:
        raise PolytaskError(
            "lookahead_affinity: loss_fn must return a 1-D tensor of per-task losses"
        )
    return out


def lookahead_affinity(
    model: nn.Module,
    shared_params: Iterable[str] | Mapping[str, Tensor],
    loss_fn: LossFn,
    batch: Any,
    lr: float,
) -> Tensor:
    """TAG matrix ``Z[i, j] = Z(i -> j)`` (float64, ``[m, m]``) on one batch.

    ``shared_params``: names (as in ``model.named_parameters()``) of the shared parameters,
    or a mapping whose keys are those names. Parameters not named keep their value.
    The model's parameters and gradients are left untouched; the passes run in eval mode
    (the model's mode is restored). Losses must be positive: a column whose ``L_j(theta)`` is
    0 (or negative) is NaN.
    """
    if lr <= 0:
        raise PolytaskError(f"lookahead_affinity: lr must be > 0, got {lr}")
    names = _shared_names(model, shared_params)
    base = {n: p.detach() for n, p in model.named_parameters()}
    shared = {n: base[n].clone().requires_grad_(True) for n in names}
    was_training = model.training
    model.eval()  # no dropout noise between the passes, no BatchNorm statistics updated
    try:
        with torch.enable_grad():
            losses = _losses(model, {**base, **shared}, loss_fn, batch)
            m = losses.shape[0]
            if m < 2:
                raise PolytaskError(f"lookahead_affinity: affinity needs at least 2 tasks, got {m}")
            if not torch.isfinite(losses).all():
                raise PolytaskError(f"lookahead_affinity: non-finite task losses {losses.tolist()}")
            grads = [
                torch.autograd.grad(
                    losses[i], list(shared.values()), retain_graph=i < m - 1, allow_unused=True
                )
                for i in range(m)
            ]
        before = losses.detach().to(torch.float64)
        z = torch.empty(m, m, dtype=torch.float64)
        with torch.no_grad():
            for i in range(m):
                moved = {
                    n: shared[n].detach()
                    - lr * (g if g is not None else torch.zeros_like(shared[n]))
                    for n, g in zip(names, grads[i])
                }
                after = _losses(model, {**base, **moved}, loss_fn, batch).to(torch.float64)
                z[i] = 1.0 - after / before
    finally:
        model.train(was_training)
    z[:, before <= 0] = float("nan")  # the ratio needs L_j > 0
    return z


def _mean(total: Tensor, count: Tensor) -> Tensor:
    return torch.where(count > 0, total / count.clamp_min(1.0), float("nan"))


@dataclass
class LookaheadCost:
    """Extra work spent measuring lookahead affinity."""

    seconds: float = 0.0
    forwards: int = 0
    backwards: int = 0
    measurements: int = 0


class LookaheadAffinity:
    """Accumulate TAG affinity every ``every`` steps, with its cost.

    Call ``maybe_update(step, batch)`` from a training loop after each optimizer step, or give
    this object to a trainer as a callback: ``on_step(info)`` measures when ``info`` carries a
    ``batch`` attribute (the batch of that step) and ``info.step % every == 0``.
    ``matrix()`` is the mean of the measured ``Z`` matrices (TAG sums them over training; the
    mean has the same ranking and the same grouping).
    """

    def __init__(
        self,
        model: nn.Module,
        shared_params: Iterable[str] | Mapping[str, Tensor],
        loss_fn: LossFn,
        lr: float,
        every: int = 10,
        task_names: Iterable[str] | None = None,
    ) -> None:
        if every < 1:
            raise PolytaskError(f"LookaheadAffinity: every must be >= 1, got {every}")
        self.model = model
        self.shared_names = _shared_names(model, shared_params)
        self.loss_fn = loss_fn
        self.lr = float(lr)
        self.every = int(every)
        self.task_names = (
            None if task_names is None else check_task_names(list(task_names), "LookaheadAffinity")
        )
        self.cost = LookaheadCost()
        self.missing_batch_steps = 0
        self._sum: Tensor | None = None
        self._count: Tensor | None = None
        self._epochs: dict[int, tuple[Tensor, Tensor]] = {}

    def maybe_update(self, step: int, batch: Any, epoch: int = 0) -> Tensor | None:
        """Measure on ``batch`` if ``step % every == 0``; returns that measurement or ``None``."""
        if step % self.every != 0:
            return None
        return self.update(batch, epoch)

    def update(self, batch: Any, epoch: int = 0) -> Tensor:
        """Measure ``Z`` on ``batch`` now and add it to the averages."""
        start = time.perf_counter()
        z = lookahead_affinity(self.model, self.shared_names, self.loss_fn, batch, self.lr)
        m = z.shape[0]
        self.cost.seconds += time.perf_counter() - start
        self.cost.forwards += 1 + m
        self.cost.backwards += m
        self.cost.measurements += 1
        if self.task_names is not None and len(self.task_names) != m:
            raise PolytaskError(
                f"LookaheadAffinity: loss_fn returned {m} losses for {len(self.task_names)} tasks"
            )
        ok = torch.isfinite(z)
        value, seen = torch.where(ok, z, 0.0), ok.to(torch.float64)
        if self._sum is None or self._count is None:
            self._sum, self._count = torch.zeros_like(z), torch.zeros_like(z)
        self._sum, self._count = self._sum + value, self._count + seen
        total, count = self._epochs.get(epoch, (torch.zeros_like(z), torch.zeros_like(z)))
        self._epochs[epoch] = (total + value, count + seen)
        return z

    def on_step(self, info: Any) -> None:
        """Trainer hook: needs ``info.batch``; steps without one are counted, not measured."""
        if self.task_names is None and getattr(info, "task_names", None):
            self.task_names = check_task_names(list(info.task_names), "LookaheadAffinity")
        batch = getattr(info, "batch", None)
        if batch is None:
            self.missing_batch_steps += 1
            return
        self.maybe_update(int(info.step), batch, int(getattr(info, "epoch", 0)))

    def on_epoch_end(self, epoch: int) -> None:
        """Nothing to close: per-epoch means are kept as running sums."""

    def matrix(self) -> Tensor:
        """Mean ``Z`` over all measurements (per entry, over the measurements where it was defined)."""
        if self._sum is None or self._count is None:
            hint = (
                f" ({self.missing_batch_steps} steps gave no info.batch: call maybe_update(step, batch) "
                "from the training loop instead)"
                if self.missing_batch_steps
                else ""
            )
            raise PolytaskError(f"LookaheadAffinity: nothing measured yet{hint}")
        return _mean(self._sum, self._count)

    def per_epoch(self) -> dict[int, Tensor]:
        """Mean ``Z`` of each epoch."""
        return {e: _mean(t, c) for e, (t, c) in sorted(self._epochs.items())}

    def state_dict(self) -> dict[str, Any]:
        """Accumulated sums and cost (the model is not part of it)."""
        return {
            "task_names": None if self.task_names is None else list(self.task_names),
            "sum": None if self._sum is None else self._sum.clone(),
            "count": None if self._count is None else self._count.clone(),
            "epochs": {e: (t.clone(), c.clone()) for e, (t, c) in self._epochs.items()},
            "cost": vars(self.cost).copy(),
            "missing_batch_steps": self.missing_batch_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        names = state["task_names"]
        self.task_names = None if names is None else tuple(names)
        self._sum = None if state["sum"] is None else state["sum"].clone()
        self._count = None if state["count"] is None else state["count"].clone()
        self._epochs = {int(e): (t.clone(), c.clone()) for e, (t, c) in state["epochs"].items()}
        self.cost = LookaheadCost(**state["cost"])
        self.missing_batch_steps = int(state["missing_batch_steps"])
