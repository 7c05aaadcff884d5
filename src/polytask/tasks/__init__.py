"""Tasks (kinds, masked losses, metrics with directions) and their data."""

from polytask.tasks.metrics import METRICS, MetricSpec
from polytask.tasks.task import Task, TaskKind, TaskSet

__all__ = ["METRICS", "MetricSpec", "Task", "TaskKind", "TaskSet"]
