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
        ok = torch.isfinite(c)
        self.total += torch.where(ok, c, 0.0)
        self.count += ok.to(torch.float64)

    def value(self) -> Tensor:
        return torch.where(self.count > 0, self.total / self.count.clamp_min(1.0), float("nan"))


class GradientAffinity:
    """Training callback averaging the gradient cosine matrix ``C`` of every step.

    Parameters
    ----------
    rate:
        EMA rate in ``(0, 1]``: ``M <- (1 - rate) M + rate C``.
    task_names:
        Optional fixed task order; otherwise taken from the first step seen.

    Steps whose ``info.gramian`` is ``None`` (the balancing method did not need one) are
    counted in ``skipped_steps`` and otherwise ignored.
    """

    def __init__(self, rate: float = 0.05, task_names: Sequence[str] | None = None) -> None:
        if not 0.0 < rate <= 1.0:
            raise PolytaskError(f"GradientAffinity: rate must be in (0, 1], got {rate}")
        self.rate = float(rate)
        self.task_names: tuple[str, ...] | None = None
        self.steps = 0
        self.skipped_steps = 0
        self._ema: Tensor | None = None
        self._all: _Mean | None = None
        self._epochs: dict[int, _Mean] = {}
        if task_names is not None:
            self._start(check_task_names(task_names, "GradientAffinity"))

    def _start(self, names: tuple[str, ...]) -> None:
        m = len(names)
        self.task_names = names
        self._ema = torch.full((m, m), float("nan"), dtype=torch.float64)
        self._all = _Mean(m)

    def on_step(self, info: StepInfo) -> None:
        """Read ``info.gramian`` (if any) and update the averages."""
        if info.gramian is None:
            self.skipped_steps += 1
            return
        names = tuple(info.task_names)
        if self.task_names is None:
            self._start(check_task_names(names, "GradientAffinity"))
        elif names != self.task_names:
            raise PolytaskError(
                f"GradientAffinity: task order changed at step {info.step}: "
                f"{list(names)} != {list(self.task_names)}"
            )
        self.update(info.gramian.detach(), int(info.epoch))

    def on_epoch_end(self, epoch: int) -> None:
        """Nothing to close: per-epoch means are kept as running sums."""

    def update(self, gramian: Tensor, epoch: int = 0) -> Tensor:
        """Add one step's Gramian; returns that step's cosine matrix."""
        if self.task_names is None or self._ema is None or self._all is None:
            raise PolytaskError("GradientAffinity.update: task names unknown; pass task_names=")
        m = len(self.task_names)
        c = gradient_cosine(gramian)
        if c.shape[0] != m:
            raise PolytaskError(
                f"GradientAffinity: gramian is {c.shape[0]}x{c.shape[0]}, {m} tasks"
            )
        ok = torch.isfinite(c)
        fresh = ok & torch.isnan(self._ema)
        blended = (1.0 - self.rate) * self._ema + self.rate * c
        self._ema = torch.where(fresh, c, torch.where(ok, blended, self._ema))
        self._all.add(c)
        self._epochs.setdefault(epoch, _Mean(m)).add(c)
        self.steps += 1
        return c

    def matrix(self) -> Tensor:
        """EMA of the cosine matrix (NaN where a pair was never defined)."""
        if self._ema is None:
            raise PolytaskError("GradientAffinity: no Gramian seen yet")
        return self._ema.clone()

    def mean(self) -> Tensor:
        """Plain mean of the cosine matrix over every step seen."""
        if self._all is None:
            raise PolytaskError("GradientAffinity: no Gramian seen yet")
        return self._all.value()

    def per_epoch(self) -> dict[int, Tensor]:
        """Mean cosine matrix of each epoch, keyed by epoch number."""
        return {e: acc.value() for e, acc in sorted(self._epochs.items())}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors and plain Python values only)."""
        return {
            "rate": self.rate,
            "task_names": list(self.task_names) if self.task_names else None,
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
            "ema": None if self._ema is None else self._ema.clone(),
            "total": None if self._all is None else self._all.total.clone(),
            "count": None if self._all is None else self._all.count.clone(),
            "epochs": {e: (a.total.clone(), a.count.clone()) for e, a in self._epochs.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.rate = float(state["rate"])
        self.steps = int(state["steps"])
        self.skipped_steps = int(state["skipped_steps"])
        self.task_names = None
        self._ema, self._all, self._epochs = None, None, {}
        if state["task_names"] is None:
            return
        self._start(tuple(state["task_names"]))
        m = len(state["task_names"])
        self._ema = state["ema"].clone().to(torch.float64)
        all_mean = _Mean(m)
        all_mean.total, all_mean.count = state["total"].clone(), state["count"].clone()
        self._all = all_mean
        for e, (total, count) in state["epochs"].items():
            acc = _Mean(m)
            acc.total, acc.count = total.clone(), count.clone()
            self._epochs[int(e)] = acc
