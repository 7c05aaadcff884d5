"""Typed results of the jobs (the report itself is :class:`polytask.eval.Report`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Required, TypedDict

from polytask.eval import Predictions
from polytask.models import MultiTaskModel

Scores = dict[str, dict[str, dict[str, float]]]  # {split: {task: {metric: value}}}


class RunSummary(TypedDict):
    """How one model was selected and trained, as the report stores it."""

    selection: dict[str, object]
    training: dict[str, object]


class ReportExtra(TypedDict, total=False):
    """The report fields a job sets beside the metrics (see :class:`polytask.eval.Report`)."""

    mode: Required[str]
    selection: dict[str, object]
    training: dict[str, object]
    runs: dict[str, RunSummary]
    stage: str
    loaded: dict[str, object] | None
    weights: str
    trunk: str | None
    norm_stats: dict[str, object]
    balancing_dropped: str
    predictions: dict[str, str]


@dataclass(frozen=True)
class Selection:
    """Which step was kept and by which rule."""

    rule: str
    description: str
    best_step: int | None
    best_score: float | None


@dataclass(frozen=True)
class TrainingRecord:
    """How training went: steps, early stop, degenerate updates, time, device."""

    steps: int
    max_steps: int
    stopped_early: bool
    zero_update_steps: int
    vanishing_update_steps: int
    seconds: float
    device: str


@dataclass(frozen=True)
class TrainResult:
    """One trained model with its metrics and predictions on val and test."""

    model: MultiTaskModel
    metrics: Scores
    selection: Selection
    training: TrainingRecord
    predictions: dict[str, Predictions] = field(default_factory=dict)

    def summary(self) -> RunSummary:
        """The selection and training records as the report stores them."""
        return {"selection": vars(self.selection), "training": vars(self.training)}


@dataclass(frozen=True)
class MergeResult:
    """A finished merge: where it was written and what it holds."""

    out: Path
    method: str
    models: int
    record: dict[str, object] = field(default_factory=dict)
