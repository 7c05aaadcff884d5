"""Callbacks that feed the affinity measures during training.

:class:`GradientProbe` feeds :class:`~polytask.affinity.GradientAffinity` with the balancer's
Gramian when the step has one, otherwise with a Gramian it computes on each step's batch, in
eval mode: per-task gradients w.r.t. the shared features (one group of inputs per step: one
trunk forward without graph and ``m`` backward passes through the heads), or w.r.t. the shared
parameters when each task has its own inputs. :class:`FullBatchLookahead` runs
:class:`~polytask.affinity.LookaheadAffinity` only on batches that carry every task.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from polytask.models import MultiTaskModel
from polytask.tasks import TaskSet
from polytask.tasks.data import Group

from .gradient import GradientAffinity
from .lookahead import LookaheadAffinity


class GradientProbe:
    """Feeds :class:`GradientAffinity`: with the balancer's Gramian when the first step has one,
    otherwise with a Gramian computed on each step's batch (see the module docstring)."""

    def __init__(self, model: MultiTaskModel, taskset: TaskSet, affinity: GradientAffinity):
        self.model, self.taskset, self.affinity = model, taskset, affinity
        self.source: str | None = None
        self.mode = ""
        self.seconds = 0.0

    def on_step(self, info: Any) -> None:
        if self.source is None:
            self.source = "balancer" if info.gramian is not None else "probe"
        if self.source == "balancer":
            self.affinity.on_step(info)
            return
        start = time.perf_counter()
        gramian, names = self.gramian(info.batch)
        if len(names) >= 2:
            self.affinity.update(gramian, names, int(info.epoch), int(info.step))
        else:
            self.affinity.skipped_steps += 1
        self.seconds += time.perf_counter() - start

    def gramian(self, batch: Sequence[Group]) -> tuple[Tensor, tuple[str, ...]]:
        """``G[i, j] = <g_i, g_j>`` of the per-task gradients on ``batch`` (float64)."""
        model, was_training = self.model, self.model.training
        model.eval()  # no dropout noise, no BatchNorm statistics touched
        try:
            with torch.enable_grad():
                if len(batch) == 1 and model.features_shared:  # else: per-task features
                    self.mode = "features"
                    with torch.no_grad():
                        z = model.forward_features(batch[0].inputs)
                    wrt: list[Tensor] = [z.detach().requires_grad_(True)]
                    losses = group_losses(
                        lambda x, n: model.forward_heads(wrt[0], n), batch, self.taskset
                    )
                else:
                    self.mode = "parameters"
                    wrt = list(model.shared_parameters())
                    losses = group_losses(model, batch, self.taskset)
                names = tuple(losses)
                rows = [flat_grad(losses[n], wrt) for n in names]
        finally:
            model.train(was_training)
        jac = torch.stack(rows).to(torch.float64)
        return jac @ jac.T, names

    def on_epoch_end(self, epoch: int) -> None:
        """Nothing to close."""


class FullBatchLookahead:
    """Lookahead measured only on batches that carry every task (Z needs all columns)."""

    def __init__(self, inner: LookaheadAffinity, names: tuple[str, ...]) -> None:
        self.inner, self.names = inner, names
        self.partial_steps = 0

    def on_step(self, info: Any) -> None:
        if tuple(info.task_names) != self.names:
            self.partial_steps += int(info.step % self.inner.every == 0)
            return
        self.inner.on_step(info)


def flat_grad(loss: Tensor, wrt: list[Tensor]) -> Tensor:
    """The gradient of ``loss`` w.r.t. ``wrt``, flattened (zeros where unused)."""
    grads = torch.autograd.grad(loss, wrt, retain_graph=True, allow_unused=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, wrt)]
    )


def group_losses(forward: Any, batch: Sequence[Group], taskset: TaskSet) -> dict[str, Tensor]:
    """Per-task losses (task weights applied), in task-set order."""
    losses: dict[str, Tensor] = {}
    for group in batch:
        names = [n for n in taskset.names if n in group.targets]
        outputs = forward(group.inputs, names)
        for n in names:
            task = taskset[n]
            losses[n] = task.compute_loss(outputs[n], group.targets[n]) * task.weight
    return {n: losses[n] for n in taskset.names if n in losses}


def lookahead_loss(taskset: TaskSet) -> Any:
    """The ``[m]`` loss function :class:`LookaheadAffinity` evaluates before and after a step."""

    def loss_fn(forward: Any, batch: Sequence[Group]) -> Tensor:
        return torch.stack(list(group_losses(forward, batch, taskset).values()))

    return loss_fn
