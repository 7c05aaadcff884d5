"""Task declarations: what each task predicts, how it is scored, and how it is trained.

A :class:`Task` is a frozen description (name, kind, loss, metrics with directions, weight). A
:class:`TaskSet` fixes the order of tasks; that order is the row order of every loss vector,
Jacobian and Gramian in polytask.

Target convention for every kind: a float tensor in which NaN marks a missing label.

======================  ==============  ==================  ==========================
kind                    head output     target              default loss / metrics
======================  ==============  ==================  ==========================
``binary``              ``[B]`` logit   ``[B]`` in {0, 1}   ``bce`` / roc_auc, pr_auc
``multiclass``          ``[B, C]``      ``[B]`` class id    ``ce`` / accuracy, f1_macro
``multilabel``          ``[B, L]``      ``[B, L]`` {0, 1}   ``bce`` / roc_auc, pr_auc
``regression``          ``[B]``         ``[B]`` real        ``mse`` / mae, rmse, r2
``reconstruction``      ``[B, D]``      ``[B, D]`` real     ``mse`` / rmse, mae, r2
``contrastive``         ``[2B, D]``     ``[2B]`` partner    ``info_nce`` / retrieval_acc
======================  ==============  ==================  ==========================

Multi-label metrics are computed per label (each on its own labelled rows) and averaged.

The last two kinds are self-supervised: their targets are generated from the inputs by a pretext
(:mod:`polytask.tasks.ssl`). A ``reconstruction`` task predicts ``D = num_classes`` values per row
and is scored only where the target is not NaN (e.g. the masked positions). A ``contrastive``
task's head is a projection of width ``num_classes``; its target holds, for each row, the index
of its positive partner in the same batch (see :func:`polytask.tasks.losses.info_nce`).

``auxiliary=True`` marks a task that is trained, logged and reported like any other but left out
of the mean metric, the default selection rule and Δm / Δp (it has no labels to be judged on).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.losses import LOSSES, LossFn
from polytask.tasks.metrics import METRICS, MetricSpec

TaskKind = Literal[
    "binary", "multiclass", "multilabel", "regression", "reconstruction", "contrastive"
]

_DEFAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "binary": ("bce", ("roc_auc", "pr_auc")),
    "multiclass": ("ce", ("accuracy", "f1_macro")),
    "multilabel": ("bce", ("roc_auc", "pr_auc")),
    "regression": ("mse", ("mae", "rmse", "r2")),
    "reconstruction": ("mse", ("rmse", "mae", "r2")),
    "contrastive": ("info_nce", ("retrieval_acc",)),
}
_LOSSES_FOR: dict[str, tuple[str, ...]] = {
    "binary": ("bce",),
    "multiclass": ("ce",),
    "multilabel": ("bce",),
    "regression": ("mse", "l1", "huber"),
    "reconstruction": ("mse", "l1", "huber"),
    "contrastive": ("info_nce",),
}
_WIDE = ("multiclass", "multilabel", "reconstruction", "contrastive")


@dataclass(frozen=True)
class Task:
    """One task: name, kind, loss, metrics (with directions) and loss weight.

    >>> t = Task("NR-AR", "binary")
    >>> t.loss, [m.name for m in t.metrics], t.out_dim
    ('bce', ['roc_auc', 'pr_auc'], 1)
    """

    name: str
    kind: TaskKind
    num_classes: int = 1
    loss: str = ""
    metric_names: tuple[str, ...] = ()
    weight: float = 1.0
    auxiliary: bool = False
    temperature: float = 0.1
    metrics: tuple[MetricSpec, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in _DEFAULTS:
            raise PolytaskError(
                f"task {self.name!r}: unknown kind {self.kind!r}; valid: {', '.join(_DEFAULTS)}"
            )
        if not self.name:
            raise PolytaskError("a task needs a non-empty name")
        default_loss, default_metrics = _DEFAULTS[self.kind]
        loss = self.loss or default_loss
        if loss not in _LOSSES_FOR[self.kind]:
            raise PolytaskError(
                f"task {self.name!r}: loss {loss!r} does not fit kind {self.kind!r}; "
                f"valid: {', '.join(_LOSSES_FOR[self.kind])}"
            )
        names = tuple(self.metric_names) or default_metrics
        table = METRICS[self.kind]
        for m in names:
            if m not in table:
                raise PolytaskError(
                    f"task {self.name!r}: unknown metric {m!r} for kind {self.kind!r}; "
                    f"valid: {', '.join(table)}"
                )
        if self.kind in ("multiclass", "multilabel") and self.num_classes < 2:
            raise PolytaskError(
                f"task {self.name!r}: kind {self.kind!r} needs num_classes >= 2, got {self.num_classes}"
            )
        if self.kind == "reconstruction" and self.num_classes < 1:
            raise PolytaskError(
                f"task {self.name!r}: kind 'reconstruction' needs num_classes >= 1 (values per row), got {self.num_classes}"
            )
        if self.kind == "contrastive" and self.num_classes < 2:
            raise PolytaskError(
                f"task {self.name!r}: kind 'contrastive' needs num_classes >= 2 (projection width), got {self.num_classes}"
            )
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise PolytaskError(
                f"task {self.name!r}: temperature must be finite and > 0, got {self.temperature}"
            )
        if not math.isfinite(self.weight) or self.weight < 0:
            raise PolytaskError(
                f"task {self.name!r}: weight must be finite and >= 0, got {self.weight}"
            )
        object.__setattr__(self, "loss", loss)
        object.__setattr__(self, "metric_names", names)
        object.__setattr__(self, "metrics", tuple(table[m] for m in names))

    @property
    def out_dim(self) -> int:
        """Width of this task's head output."""
        return self.num_classes if self.kind in _WIDE else 1

    @property
    def loss_fn(self) -> LossFn:
        if self.kind == "contrastive":
            fn: Callable[..., Tensor] = LOSSES[self.loss]
            return partial(fn, temperature=self.temperature)
        return LOSSES[self.loss]

    def compute_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """The masked loss of this task (NaN targets are missing labels)."""
        return self.loss_fn(pred, target)

    def metric(self, name: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == name:
                return m
        raise PolytaskError(
            f"task {self.name!r} has no metric {name!r}; it has: {', '.join(self.metric_names)}"
        )

    def compute_metrics(self, pred: Tensor, target: Tensor) -> dict[str, float]:
        """All metrics of this task on full-split predictions (raw head outputs)."""
        pred = pred.detach().float()
        target = target.detach().float()
        if self.kind == "multilabel":
            return self._multilabel_metrics(pred, target)
        if self.kind == "contrastive":  # rows are scored against the whole set, NaN rows included
            return {m.name: m.fn(pred, target, self.num_classes) for m in self.metrics}
        mask = ~torch.isnan(target)
        p, t = pred[mask], target[mask]
        if self.kind == "binary":
            p = p.sigmoid()
        elif self.kind == "multiclass":
            p = p.softmax(-1)
        return {m.name: m.fn(p, t, self.num_classes) for m in self.metrics}

    def _multilabel_metrics(self, pred: Tensor, target: Tensor) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.metrics:
            vals = []
            for j in range(target.shape[1]):
                mask = ~torch.isnan(target[:, j])
                v = m.fn(pred[mask, j].sigmoid(), target[mask, j], 1)
                if not math.isnan(v):
                    vals.append(v)
            out[m.name] = sum(vals) / len(vals) if vals else math.nan
        return out


class TaskSet(Mapping[str, Task]):
    """An ordered, name-unique collection of tasks; its order is every loss vector's order."""

    def __init__(self, tasks: Iterable[Task]) -> None:
        self._tasks: tuple[Task, ...] = tuple(tasks)
        if not self._tasks:
            raise PolytaskError("a TaskSet needs at least one task")
        names = [t.name for t in self._tasks]
        dupes = sorted(n for n, c in Counter(names).items() if c > 1)
        if dupes:
            raise PolytaskError(f"duplicate task names: {', '.join(dupes)}")
        self._index = {n: i for i, n in enumerate(names)}

    def __getitem__(self, name: str) -> Task:
        try:
            return self._tasks[self._index[name]]
        except KeyError:
            raise PolytaskError(
                f"unknown task {name!r}; tasks are: {', '.join(self.names)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return f"TaskSet({', '.join(self.names)})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._index)

    @property
    def tasks(self) -> tuple[Task, ...]:
        return self._tasks

    def index(self, name: str) -> int:
        """Position of ``name`` in the task order."""
        if name not in self._index:
            raise PolytaskError(f"unknown task {name!r}; tasks are: {', '.join(self.names)}")
        return self._index[name]

    def subset(self, names: Iterable[str]) -> TaskSet:
        """The tasks named, in this set's order."""
        wanted = set(names)
        for n in wanted:
            self.index(n)
        return TaskSet(t for t in self._tasks if t.name in wanted)
