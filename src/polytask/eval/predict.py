"""Predictions of a multi-task model over a whole split, in row order, without gradients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError, all_finite, module_device
from polytask.tasks import TaskSet
from polytask.tasks.column_metrics import COLUMN_METRICS, binary_column_metrics
from polytask.tasks.data import TensorData
from polytask.tasks.data.tensors import index_inputs, inputs_to

from .predictions import Predictions


@torch.no_grad()
def predict(
    model: nn.Module,
    data: TensorData,
    tasks: Sequence[str],
    batch_size: int = 1024,
    split: str | None = None,
) -> dict[str, Tensor]:
    """Raw head outputs ``{task: [N, ...]}`` for every row of ``data`` (model in eval mode);
    ``split`` names the rows in errors."""
    was_training = model.training
    model.eval()
    device = module_device(model)
    try:
        chunks: dict[str, list[Tensor]] = {t: [] for t in tasks}
        n = len(data)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            out = model(inputs_to(index_inputs(data.inputs, idx), device), list(tasks))
            for t in tasks:
                chunks[t].append(out[t].detach().float().cpu())
        preds = {t: torch.cat(c) for t, c in chunks.items()}
    finally:
        model.train(was_training)
    for t, p in preds.items():
        if not all_finite(p):
            bad = int((~torch.isfinite(p)).reshape(p.shape[0], -1).any(dim=1).sum())
            raise PolytaskError(
                f"task {t!r}: the model's outputs are NaN or Inf on {bad} of {p.shape[0]} rows "
                f"of {data.name}{f' ({split} split)' if split else ''}; metrics would be "
                "meaningless"
            )
    return preds


SplitData = TensorData | Mapping[str, TensorData]


def task_metrics(
    taskset: TaskSet,
    names: Sequence[str],
    preds: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
) -> dict[str, dict[str, float]]:
    """The metrics of tasks ``names`` from full-split predictions. Binary tasks scored only by
    ROC-AUC / PR-AUC (the default) are scored together, one pass over all their columns
    (:func:`~polytask.tasks.column_metrics.binary_column_metrics`, equal to the per-task values);
    every other task by its own :meth:`~polytask.tasks.Task.compute_metrics`."""
    columnar = [
        n
        for n in names
        if taskset[n].kind == "binary"
        and set(taskset[n].metric_names) <= set(COLUMN_METRICS)
        and preds[n].dim() == 1
    ]
    together = binary_column_metrics(columnar, preds, targets)
    out = {}
    for n in names:
        if n in together:
            out[n] = {m: together[n][m] for m in taskset[n].metric_names}
        else:
            out[n] = taskset[n].compute_metrics(preds[n], targets[n])
    return out


def predict_split(
    model: nn.Module,
    taskset: TaskSet,
    data: SplitData,
    batch_size: int = 1024,
    split: str | None = None,
) -> Predictions:
    """Every task's outputs and targets on one split; ``data`` is shared by all tasks or given
    per task (tasks given the same data object share one forward pass and one row group)."""
    parts = [data] if isinstance(data, TensorData) else []
    if not isinstance(data, TensorData):
        seen: dict[int, TensorData] = {}
        for t in taskset.tasks:
            seen.setdefault(id(data[t.name]), data[t.name])
        parts = list(seen.values())
    preds: dict[str, Tensor] = {}
    targets: dict[str, Tensor] = {}
    groups: dict[str, int] = {}
    for g, part in enumerate(parts):
        names = [n for n in taskset.names if n in part.targets and n not in preds]
        if not isinstance(data, TensorData):
            names = [n for n in taskset.names if data[n] is part]
        preds.update(predict(model, part, names, batch_size, split))
        targets.update({n: part.targets[n] for n in names})
        groups.update({n: g for n in names})
    missing = [n for n in taskset.names if n not in preds]
    if missing:
        raise PolytaskError(f"no {split or 'evaluation'} data for task(s) {missing}")
    return Predictions(preds, targets, groups)


def evaluate_split(
    model: nn.Module,
    taskset: TaskSet,
    data: SplitData,
    batch_size: int = 1024,
    split: str | None = None,
) -> dict[str, dict[str, float]]:
    """Per-task metrics on one split; ``data`` is shared by all tasks or given per task.

    Self-supervised tasks are evaluated on data their pretext generated from the split (see
    :func:`polytask.tasks.ssl.pretext_split`), passed per task next to the supervised data.
    """
    out = predict_split(model, taskset, data, batch_size, split)
    return split_metrics(taskset, out)


def split_metrics(taskset: TaskSet, out: Predictions) -> dict[str, dict[str, float]]:
    """Per-task metrics of one split's predictions, in task-set order."""
    metrics: dict[str, dict[str, float]] = {}
    for g in sorted(set(out.groups.values())):
        names = [n for n in taskset.names if out.groups[n] == g]
        metrics.update(task_metrics(taskset, names, out.preds, out.targets))
    return {t.name: metrics[t.name] for t in taskset.tasks}


def evaluate(
    model: nn.Module, taskset: TaskSet, splits: Mapping[str, SplitData], batch_size: int = 1024
) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {task: {metric: value}}}`` for every split given (e.g. ``val`` and ``test``)."""
    return {
        name: evaluate_split(model, taskset, data, batch_size, name)
        for name, data in splits.items()
    }
