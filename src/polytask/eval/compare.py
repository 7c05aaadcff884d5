"""What a comparison with a baseline run needs beside the two reports: each task's support on a
split (for the :class:`~polytask.eval.floor.Floor`) and the bootstrap intervals from the
predictions both runs saved.

A report names its saved predictions in ``predictions`` (``{split: path}``, relative to the
report's folder). A baseline whose report names none (written before predictions were saved),
whose files are gone, or whose predictions are of other rows gives no interval: the comparison
says why (``{"unavailable": why}``) instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from polytask._core import PolytaskError
from polytask.tasks import TaskSet
from polytask.tasks.data import TensorData

from .bootstrap import Intervals, bootstrap_intervals
from .delta import Scores
from .floor import Floor, excluded_metrics, task_support
from .predict import SplitData
from .predictions import Predictions
from .report import Report

__all__ = ["baseline_intervals", "report_file", "row_groups", "split_support"]


def split_support(taskset: TaskSet, data: SplitData) -> dict[str, int]:
    """:func:`~polytask.eval.floor.task_support` of every supervised task on one split."""
    out = {}
    for task in taskset.tasks:
        if task.auxiliary:
            continue
        part = data if isinstance(data, TensorData) else data[task.name]
        out[task.name] = task_support(task.kind, part.targets[task.name])
    return out


def row_groups(names: Sequence[str], data: SplitData) -> dict[str, int]:
    """The row group of each task (tasks given the same data share one), numbered as
    :func:`~polytask.eval.predict_split` numbers them."""
    if isinstance(data, TensorData):
        return dict.fromkeys(names, 0)
    seen: dict[int, int] = {}
    return {n: seen.setdefault(id(data[n]), len(seen)) for n in names}


def report_file(path: str | Path) -> Path:
    """The report at ``path``: the file itself, or ``report.json`` in a run folder."""
    path = Path(path)
    return path / "report.json" if path.is_dir() else path


def _saved(report: Report, path: Path, split: str) -> Predictions | str:
    if not report.predictions:
        return (
            f"the baseline {path} saved no predictions (written by an older polytask); "
            "'polytask eval' on the baseline run saves them: compare with its eval.json"
        )
    if split not in report.predictions:
        return f"the baseline {path} saved no {split} predictions"
    file = path.parent / report.predictions[split]
    if not file.is_file():
        return f"the baseline's {split} predictions are gone ({file})"
    return Predictions.load(file)


def baseline_intervals(
    taskset: TaskSet, model: Mapping[str, Predictions], source: str | Path, baseline: Report,
    support: Mapping[str, Mapping[str, int]], floor: Floor, draws: int,
) -> dict[str, Intervals | str]:  # fmt: skip
    """Per split of ``model``: the paired bootstrap intervals against the predictions the
    baseline report at ``source`` saved, or why there are none. ``draws=0`` switches them off."""
    path = report_file(source)
    out: dict[str, Intervals | str] = {}
    for split, preds in model.items():
        scores: Scores | None = baseline.metrics.get(split)
        if scores is None:
            continue
        if draws <= 0:
            out[split] = "switched off (evaluation.bootstrap: 0)"
            continue
        saved = _saved(baseline, path, split)
        if isinstance(saved, str):
            out[split] = saved
            continue
        exclude = excluded_metrics(taskset, scores, support.get(split, {}), floor)
        try:
            out[split] = bootstrap_intervals(taskset, preds, saved, exclude=exclude, draws=draws)
        except PolytaskError as err:
            out[split] = str(err)
    return out
