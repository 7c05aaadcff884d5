"""Model selection scores: one number from per-task validation metrics, with a direction.

A selection rule is ``"mean:<metric>"`` (the metric averaged over the tasks that have it,
NaNs skipped) or ``"<task>:<metric>"`` (one task's metric). Its direction is the metric's.
Auxiliary tasks are left out of ``mean`` (unless every task having the metric is auxiliary, as
in a pre-training run); naming one explicitly as ``"<task>:<metric>"`` selects on it.

A single-task baseline selects on its own task (:func:`single_task_rule`): the rule's metric
when the task has it (``"SR-MMP:roc_auc"`` and ``"mean:roc_auc"`` both become
``"<task>:roc_auc"``), else the task's first metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from polytask._core import PolytaskError
from polytask.tasks import Task, TaskSet

from .delta import Scores


@dataclass(frozen=True)
class SelectionRule:
    """Which validation number picks the best checkpoint, and whether higher is better."""

    scope: str
    metric: str
    higher_is_better: bool
    exclude: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, rule: str, taskset: TaskSet) -> SelectionRule:
        scope, sep, metric = rule.rpartition(":")
        if not sep or not scope or not metric:
            raise PolytaskError(
                f"selection rule {rule!r} must look like 'mean:roc_auc' or 'TASK:metric'"
            )
        tasks = taskset.tasks if scope == "mean" else (taskset[scope],)
        having = [t for t in tasks if metric in t.metric_names]
        if not having:
            raise PolytaskError(f"selection rule {rule!r}: no task has metric {metric!r}")
        main = [t for t in having if not t.auxiliary] if scope == "mean" else having
        exclude = frozenset(t.name for t in taskset.tasks if t.auxiliary) if main else frozenset()
        chosen = main or having
        return cls(scope, metric, chosen[0].metric(metric).higher_is_better, exclude)

    def score(self, scores: Scores) -> float:
        if self.scope != "mean":
            return scores[self.scope][self.metric]
        vals = [
            s[self.metric]
            for name, s in scores.items()
            if name not in self.exclude and self.metric in s and not math.isnan(s[self.metric])
        ]
        return sum(vals) / len(vals) if vals else math.nan

    def better(self, new: float, best: float | None) -> bool:
        if math.isnan(new):
            return False
        if best is None or math.isnan(best):
            return True
        return new > best if self.higher_is_better else new < best

    def describe(self) -> str:
        aux = " (auxiliary tasks excluded)" if self.exclude else ""
        what = (
            f"mean of {self.metric!r} over tasks{aux}"
            if self.scope == "mean"
            else f"{self.metric!r} of task {self.scope!r}"
        )
        return f"checkpoint with the {'highest' if self.higher_is_better else 'lowest'} validation {what}"


def single_task_rule(rule: str | None, taskset: TaskSet, task: Task) -> str:
    """The selection rule of ``task``'s single-task run, from the joint rule ``rule`` (checked
    against the whole ``taskset`` first, so a typo fails as it would in joint training): the
    rule's metric on ``task`` when it has that metric, else ``task``'s first metric.

    >>> ts = TaskSet([Task("a", "binary"), Task("r", "regression")])
    >>> single_task_rule("a:pr_auc", ts, ts["a"]), single_task_rule("a:pr_auc", ts, ts["r"])
    ('a:pr_auc', 'r:mae')
    >>> single_task_rule(None, ts, ts["r"])
    'r:mae'
    """
    metric = task.metric_names[0]
    if rule is not None:
        parsed = SelectionRule.parse(rule, taskset)
        metric = parsed.metric if parsed.metric in task.metric_names else metric
    return f"{task.name}:{metric}"
