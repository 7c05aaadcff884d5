"""Distil a teacher (an ensemble or a large model) into a small student on unlabeled inputs.

The teacher's raw outputs are computed once over all inputs (eval mode, no gradients); the
student then trains on seeded mini-batches of ``(inputs, teacher outputs)`` — no labels needed.
Soft-target loss per task kind (Hinton et al. 2015, "Distilling the Knowledge in a Neural
Network", for the temperature form), ``z`` the student's and ``t`` the teacher's raw outputs:

* ``binary`` / ``multilabel``: ``BCE(z, σ(t)) = −mean[σ(t) log σ(z) + (1 − σ(t)) log(1 − σ(z))]``,
* ``multiclass``: ``T² · mean_rows KL(softmax(t/T) ‖ softmax(z/T))`` (temperature ``T``),
* ``regression`` / ``reconstruction``: ``mean (z − t)²``.

The total loss is the sum over tasks. Training is deterministic: batches are a pure function of
``(seed, step)`` and torch's global generator is seeded with ``seed`` (dropout in the student).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask._core import NonFiniteLossError, PolytaskError
from polytask.eval.predict import predict
from polytask.tasks.data import JointLoader, TensorData
from polytask.tasks.data.tensors import Inputs
from polytask.train.progress import progress_bar


def soft_loss(student: Tensor, teacher: Tensor, kind: str, temperature: float = 1.0) -> Tensor:
    """The soft-target loss of one task (see the module docstring).

    >>> round(soft_loss(torch.zeros(2), torch.zeros(2), "binary").item(), 4)
    0.6931
    """
    teacher = teacher.detach()
    if kind in ("binary", "multilabel"):
        return F.binary_cross_entropy_with_logits(student, torch.sigmoid(teacher))
    if kind == "multiclass":
        if not temperature > 0:
            raise PolytaskError(f"distillation: temperature must be > 0, got {temperature}")
        t = temperature
        log_q = F.log_softmax(student / t, dim=-1)
        log_p = F.log_softmax(teacher / t, dim=-1)
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * t * t
    if kind in ("regression", "reconstruction"):
        return F.mse_loss(student, teacher)
    raise PolytaskError(f"distillation: no soft-target loss for task kind {kind!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class DistillResult:
    """Per-step total losses, the student's parameter count and the wall time."""

    losses: list[float]
    student_params: int
    seconds: float
    teacher_outputs: dict[str, Tensor] = field(repr=False, default_factory=dict)


def distill(
    teacher: nn.Module,
    student: nn.Module,
    inputs: Inputs,
    kinds: Mapping[str, str],
    *,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    temperature: float = 2.0,
    seed: int = 0,
    progress: bool = True,
    teacher_batch_size: int = 1024,
    tasks: Sequence[str] | None = None,
) -> DistillResult:
    """Train ``student`` (in place) to match ``teacher`` on ``inputs`` for ``steps`` AdamW steps.

    ``kinds`` maps each distilled task to its kind; ``tasks`` (default: all of ``kinds``) picks
    which. Both models are called as ``model(inputs, tasks) -> {task: raw output}``.
    """
    if steps < 1:
        raise PolytaskError(f"distillation: steps must be >= 1, got {steps}")
    names = list(tasks) if tasks is not None else list(kinds)
    missing = [t for t in names if t not in kinds]
    if missing or not names:
        raise PolytaskError(f"distillation: no task kind given for task(s) {missing or '(none)'}")
    start = time.perf_counter()
    targets = predict(teacher, TensorData(inputs, {}, name="unlabeled"), names, teacher_batch_size)
    loader = JointLoader(TensorData(inputs, targets, name="unlabeled"), batch_size, seed=seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(
        [p for p in student.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
    )
    losses: list[float] = []
    student.train()
    with progress_bar(steps, 0, enabled=progress, label="distill") as bar:
        for step in range(steps):
            group = loader.batch(step)[0]
            out = student(group.inputs, names)
            total = torch.stack(
                [soft_loss(out[t], group.targets[t], kinds[t], temperature) for t in names]
            ).sum()
            value = float(total.detach())
            if not torch.isfinite(total):
                raise NonFiniteLossError(f"distillation step {step}: the loss is {value}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            losses.append(value)
            bar.advance(step + 1)
    student.eval()
    return DistillResult(losses, count_parameters(student), time.perf_counter() - start, targets)
