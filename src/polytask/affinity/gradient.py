"""Gradient affinity: pairwise cosine of task gradients, read from the balancing Gramian.

For task gradients ``g_1 .. g_m`` (with respect to shared parameters or shared features) the
Gramian is ``G[i, j] = <g_i, g_j>`` and the cosine matrix is

    C[i, j] = G[i, j] / sqrt(G[i, i] * G[j, j])

(as used for gradient-conflict analysis, e.g. Yu et al. 2020, "Gradient Surgery for Multi-Task
Learning"). No extra backward pass: the Gramian is the one the balancing step already built.
``C`` is symmetric with unit diagonal and does not change when a task's loss is multiplied by a
positive constant. A task whose gradient is zero has no direction: its row and column are NaN
for that step and are left out of the averages.

Averaged over training, per entry (so a step where a pair is undefined does not bias it):

- ``matrix()``: exponential moving average ``M <- (1 - rate) * M + rate * C`` (the first
  defined value initialises ``M``);
- ``mean()``: plain mean over all steps;
- ``per_epoch()``: plain mean within each epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.affinity._protocols import StepInfo
from polytask.affinity._validate import check_matrix, check_task_names


def gradient_cosine(gramian: Tensor, eps: float = 1e-12) -> Tensor:
    """``C[i, j] = G[i, j] / sqrt(G[i, i] G[j, j])`` in float64; NaN where a gradient is ~zero.

    >>> gradient_cosine(torch.tensor([[4.0, 2.0], [2.0, 1.0]])).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    g = check_matrix(gramian, "gramian", symmetric=True, atol=1e-4)
    diag = torch.diagonal(g)
    if (diag < -eps * max(1.0, float(diag.abs().max()))).any():
        raise PolytaskError(f"gramian: negative diagonal {diag.tolist()} (not a Gramian)")
    norms = diag.clamp_min(0.0).sqrt()
    scale = torch.outer(norms, norms)
    c = g / scale
    dead = norms <= math.sqrt(eps) * max(1.0, float(norms.max()))
    c[dead, :] = float("nan")
    c[:, dead] = float("nan")
    c = c.clamp(-1.0, 1.0)  # NaN stays NaN
    c = 0.5 * (c + c.T)
    live = torch.nonzero(~dead).flatten()
    c[live, live] = 1.0
    return c


class _Mean:
    """Per-entry running sum and count of the finite values seen."""

    def __init__(self, m: int) -> None:
        self.total = torch.zeros(m, m, dtype=torch.float64)
        self.count = torch.zeros(m, m, dtype=torch.float64)

    def add(self, c: Tensor) -> None:
        self.grow(c.shape[0])
        ok = torch.isfinite(c)
        self.total += torch.where(ok, c, 0.0)
        self.count += ok.to(torch.float64)

    def grow(self, m: int) -> None:
        self.total = _pad(self.total, m, 0.0)
        self.count = _pad(self.count, m, 0.0)

    def value(self) -> Tensor:
        return torch.where(self.count > 0, self.total / self.count.clamp_min(1.0), float("nan"))


def _pad(a: Tensor, m: int, fill: float) -> Tensor:
    """``a`` grown to ``[m, m]`` with ``fill`` in the new rows and columns."""
    if a.shape[0] >= m:
        return a
    out = torch.full((m, m), fill, dtype=a.dtype)
    out[: a.shape[0], : a.shape[0]] = a
    return out


class GradientAffinity:
    """Training callback averaging the gradient cosine matrix ``C`` of every step.

    Parameters
    ----------
    rate:
        EMA rate in ``(0, 1]``: ``M <- (1 - rate) M + rate C``.
    task_names:
        Optional fixed task set and order; otherwise tasks are added in the order they are
        first seen.

    A step may carry a subset of the tasks (a batch without labels for some): its Gramian's
    rows follow ``info.task_names`` and only those pairs are updated. Steps whose
    ``info.gramian`` is ``None`` (the balancing method did not need one) or that hold fewer
    than two tasks are counted in ``skipped_steps`` and otherwise ignored.
    """

    def __init__(self, rate: float = 0.05, task_names: Sequence[str] | None = None) -> None:
        if not 0.0 < rate <= 1.0:
            raise PolytaskError(f"GradientAffinity: rate must be in (0, 1], got {rate}")
        self.rate = float(rate)
        self.fixed = task_names is not None
        self.task_names: tuple[str, ...] = ()
        if task_names is not None:
            self.task_names = check_task_names(task_names, "GradientAffinity")
        self.steps = 0
        self.skipped_steps = 0
        m = len(self.task_names)
        self._ema = torch.full((m, m), float("nan"), dtype=torch.float64)
        self._all = _Mean(m)
        self._epochs: dict[int, _Mean] = {}

    def _indices(self, names: Sequence[str], step: int) -> list[int]:
        known = list(self.task_names)
        new = [n for n in names if n not in known]
        if new and self.fixed:
            raise PolytaskError(
                f"GradientAffinity: step {step} has task '{new[0]}', not one of {known}"
            )
        if len(set(names)) != len(names):
            raise PolytaskError(
                f"GradientAffinity: step {step} repeats a task name in {list(names)}"
            )
        self.task_names = tuple(known + new)
        m = len(self.task_names)
        self._ema = _pad(self._ema, m, float("nan"))
        self._all.grow(m)
        return [self.task_names.index(n) for n in names]

    def on_step(self, info: StepInfo) -> None:
        """Read ``info.gramian`` (if any) and update the averages."""
        names = tuple(info.task_names)
        if info.gramian is None or len(names) < 2:
            self.skipped_steps += 1
            return
        self.update(info.gramian.detach(), names, int(info.epoch), int(info.step))

    def on_epoch_end(self, epoch: int) -> None:
        """Nothing to close: per-epoch means are kept as running sums."""

    def update(
        self, gramian: Tensor, task_names: Sequence[str], epoch: int = 0, step: int = -1
    ) -> Tensor:
        """Add one step's Gramian (rows in ``task_names`` order); returns its cosine matrix."""
        local = gradient_cosine(gramian)
        if local.shape[0] != len(task_names):
            raise PolytaskError(
                f"GradientAffinity: step {step} gramian is {local.shape[0]}x{local.shape[0]} "
                f"for {len(task_names)} tasks {list(task_names)}"
            )
        idx = torch.tensor(self._indices(task_names, step))
        m = len(self.task_names)
        c = torch.full((m, m), float("nan"), dtype=torch.float64)
        c[idx.unsqueeze(1), idx.unsqueeze(0)] = local
        ok = torch.isfinite(c)
        fresh = ok & torch.isnan(self._ema)
        blended = (1.0 - self.rate) * self._ema + self.rate * c
        self._ema = torch.where(fresh, c, torch.where(ok, blended, self._ema))
        self._all.add(c)
        self._epochs.setdefault(epoch, _Mean(m)).add(c)
        self.steps += 1
        return local

    def _need_data(self) -> None:
        if self.steps == 0:
            raise PolytaskError(
                "GradientAffinity: no Gramian seen yet (does the balancing method compute one?)"
            )

    def matrix(self) -> Tensor:
        """EMA of the cosine matrix, rows/columns in ``task_names`` order (NaN: never defined)."""
        self._need_data()
        return self._ema.clone()

    def mean(self) -> Tensor:
        """Plain mean of the cosine matrix over every step seen."""
        self._need_data()
        return self._all.value()

    def per_epoch(self) -> dict[int, Tensor]:
        """Mean cosine matrix of each epoch, keyed by epoch number (padded to all tasks)."""
        m = len(self.task_names)
        out = {}
        for e, acc in sorted(self._epochs.items()):
            acc.grow(m)
            out[e] = acc.value()
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors and plain Python values only)."""
        return {
            "rate": self.rate,
            "fixed": self.fixed,
            "task_names": list(self.task_names),
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
            "ema": self._ema.clone(),
            "total": self._all.total.clone(),
            "count": self._all.count.clone(),
            "epochs": {e: (a.total.clone(), a.count.clone()) for e, a in self._epochs.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.rate = float(state["rate"])
        self.fixed = bool(state["fixed"])
        self.task_names = tuple(state["task_names"])
        self.steps = int(state["steps"])
        self.skipped_steps = int(state["skipped_steps"])
        self._ema = state["ema"].clone().to(torch.float64)
        self._all = _Mean(0)
        self._all.total, self._all.count = state["total"].clone(), state["count"].clone()
        self._epochs = {}
        for e, (total, count) in state["epochs"].items():
            acc = _Mean(0)
            acc.total, acc.count = total.clone(), count.clone()
            self._epochs[int(e)] = acc
