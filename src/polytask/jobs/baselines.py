"""What makes a single-task baseline fair, and whether it learned anything.

* :func:`single_run_config`: the config of one task's run: the joint run's step budget and
  validation schedule (:mod:`polytask.build.baseline_budget`), the selection rule mapped to the
  task (:func:`polytask.eval.selection.single_task_rule`).
* :func:`trivial_check`: each task's baseline against a trivial predictor fitted on the training
  split — regression: the training mean; binary and multi-label: the training prior as a constant
  score (ROC-AUC 0.5, PR-AUC = prevalence); multiclass: the majority class — scored on the same
  val/test rows with the metric the task selects on. A task whose baseline does not beat it on
  a split (higher or lower in the metric's direction; a NaN on either side is no verdict) is
  flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from polytask.build.baseline_budget import BaselineBudget
from polytask.build.prepared import PreparedData, SplitData
from polytask.build.standardize import original_targets
from polytask.config.schema import TrainConfig
from polytask.eval.selection import single_task_rule
from polytask.tasks import Task
from polytask.tasks.data import TensorData

from .results import Scores

__all__ = ["baseline_record", "single_run_config", "trivial_check", "trivial_output"]

_EPS = 1e-6


def single_run_config(config: TrainConfig, prepared: PreparedData, task: Task,
                      budget: BaselineBudget) -> TrainConfig:  # fmt: skip
    """``config`` for ``task``'s single-task run: the budget's steps and validation interval,
    the selection rule on the task's own metric."""
    t = config.train
    rule = single_task_rule(t.selection, prepared.taskset, task)
    train = t.model_copy(
        update={"steps": budget.steps, "epochs": None, "eval_every": budget.eval_every,
                "selection": rule}
    )  # fmt: skip
    return config.model_copy(update={"train": train})


def _targets(data: SplitData, name: str) -> Tensor:
    part = data if isinstance(data, TensorData) else data[name]
    return part.targets[name].float()


def trivial_output(task: Task, train: Tensor, rows: int) -> tuple[Tensor, str]:
    """The trivial predictor's raw head outputs for ``rows`` rows, fitted on the training
    targets ``train`` (NaN = missing), and what it predicts in words.

    >>> out, what = trivial_output(Task("b", "binary"), torch.tensor([0.0, 1, 0, 0, float("nan")]), 2)
    >>> out.sigmoid().tolist(), what
    ([0.25, 0.25], 'training prior 0.25')
    """
    if task.kind == "multiclass":
        y = train[~torch.isnan(train)].long()
        top = int(torch.bincount(y, minlength=task.num_classes).argmax())
        out = torch.zeros(rows, task.num_classes)
        out[:, top] = 1.0
        return out, f"majority class {top}"
    mean = torch.nanmean(train, dim=0)
    if task.kind == "regression":
        return mean.expand(rows).clone(), f"training mean {float(mean):.4g}"
    prior = mean.clamp(_EPS, 1 - _EPS)
    out = torch.logit(prior).expand(rows, *prior.shape).clone()
    shown = f"{float(prior):.4g}" if prior.dim() == 0 else "per label"
    return out, f"training prior {shown}"


def _beats(task: Task, metric: str, model: float, trivial: float) -> bool | None:
    if math.isnan(model) or math.isnan(trivial):
        return None
    return model > trivial if task.metric(metric).higher_is_better else model < trivial


def _task_check(
    task: Task, metric: str, prepared: PreparedData, scores: Scores
) -> tuple[dict[str, object], bool]:
    """One task's entry of the trivial section, and whether it is flagged."""
    fitted = original_targets(
        prepared.info, task.name, _targets(prepared.splits["train"], task.name)
    )
    entry: dict[str, object] = {"predictor": trivial_output(task, fitted, 0)[1], "metric": metric}
    flagged = False
    for split in (s for s in ("val", "test") if s in prepared.splits and s in scores):
        y = original_targets(prepared.info, task.name, _targets(prepared.splits[split], task.name))
        out, _ = trivial_output(task, fitted, len(y))
        trivial = task.compute_metrics(out, y)
        model = scores[split][task.name][metric]
        beats = _beats(task, metric, model, trivial[metric])
        flagged |= beats is False
        entry[split] = {"baseline": model, "trivial": trivial[metric], "beats": beats,
                        "trivial_metrics": trivial}  # fmt: skip
    return entry, flagged


def trivial_check(
    prepared: PreparedData, scores: Scores, metrics: Mapping[str, str]
) -> tuple[dict[str, dict[str, object]], list[str]]:
    """Each task of ``metrics`` (task → the metric it selects on) against its trivial
    predictor on val and test: ``({task: entry}, flagged tasks)``."""
    section, flagged = {}, []
    for name, metric in metrics.items():
        section[name], bad = _task_check(prepared.taskset[name], metric, prepared, scores)
        if bad:
            flagged.append(name)
    return section, flagged


def baseline_record(
    config: TrainConfig, budget: BaselineBudget, prepared: PreparedData, scores: Scores
) -> dict[str, object]:
    """What a single-task run's report says about its baselines: the budget (rule and steps),
    each task against its trivial predictor on the metric it selects on, the flagged tasks."""
    rule, taskset = config.train.selection, prepared.taskset
    names = next(iter(scores.values()), {})
    metrics = {n: single_task_rule(rule, taskset, taskset[n]).rpartition(":")[2] for n in names}
    trivial, flagged = trivial_check(prepared, scores, metrics)
    return {
        "budget": budget.record(config.train.batch_size),
        "trivial": trivial,
        "flagged": flagged,
    }
