"""The evaluation report: one JSON file with everything needed to judge a multi-task model.

It holds per-task metrics on each split, the mean of each metric over tasks (auxiliary,
self-supervised tasks are reported per task, marked ``"auxiliary": true``, but left out of the
means), the model-selection rule in words, and — when single-task baselines are given — each task's signed relative gain
and Δm / Δp (formulas in :mod:`polytask.eval.delta`, repeated in the report itself).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from polytask import __version__
from polytask._core import PolytaskError, write_text
from polytask.tasks import TaskSet

from .bootstrap import Intervals
from .delta import Scores, delta_m, delta_p, relative_gains
from .floor import Floor, excluded_metrics

FORMULAS = {
    "gain": "g = s * (M - B) / |B|, s = +1 if higher is better else -1 (M: multi-task, B: single-task baseline)",
    "delta_m": "Δm = -100/K * Σ_{all K metrics} g  (Maninis et al. 2019; Nash-MTL/FAMO tables; lower is better)",
    "delta_p": "Δp = 100/T * Σ_tasks mean_{metrics of the task} g  (LibMTL; higher is better)",
}


def metric_means(taskset: TaskSet, scores: Scores) -> dict[str, float]:
    """Each metric averaged over the non-auxiliary tasks that have it (NaNs skipped)."""
    names: dict[str, list[float]] = {}
    for t in taskset.tasks:
        if t.auxiliary:
            continue
        for m in t.metric_names:
            v = scores.get(t.name, {}).get(m, math.nan)
            if not math.isnan(v):
                names.setdefault(m, []).append(v)
    return {m: sum(v) / len(v) for m, v in names.items()}


#: 2: the floor (``comparison.<split>.excluded``, ``floor``, ``delta_m_all``), the bootstrap
#: ``intervals`` and the saved ``predictions``; version 1 reports (without them) still load.
SCHEMA_VERSION = 2
READS = (1, 2)


class TaskEntry(BaseModel):
    """One task of a report: its kind, loss, and each metric's direction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: str
    loss: str
    auxiliary: bool = False
    metrics: dict[str, str]


class Comparison(BaseModel):
    """One split against the single-task baseline.

    ``delta_m`` / ``delta_p`` are the headline numbers: the metrics in ``excluded`` (under the
    :class:`~polytask.eval.floor.Floor`, with the reason) are left out of them and counted in
    ``delta_m_all`` / ``delta_p_all``. ``gains`` holds every gain; ``intervals`` the paired
    bootstrap intervals over the split's rows when both runs saved their predictions, else
    ``{"unavailable": why}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    delta_m: float | None
    delta_p: float | None
    gains: dict[str, dict[str, float | None]]
    baseline_means: dict[str, float]
    delta_m_all: float | None = None
    delta_p_all: float | None = None
    excluded: dict[str, dict[str, str]] = {}
    floor: dict[str, float] | None = None
    intervals: dict[str, Any] | None = None


class Report(BaseModel):
    """``report.json``: what a training, evaluation or merge evaluation produced.

    ``schema_version`` is checked on load: a report from an unknown (newer) version is refused.
    Reports written before the field existed are version 1; versions 1 and 2 are read.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    mode: str
    tasks: list[TaskEntry]
    metrics: dict[str, dict[str, dict[str, float]]]
    means: dict[str, dict[str, float]]
    selection: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    runs: dict[str, dict[str, Any]] | None = None  # single-task: per task selection and training
    stages: list[dict[str, Any]] | None = None  # multi-stage: one summary per stage
    stage: str | None = None  # the stage this report is of
    loaded: dict[str, Any] | None = None  # a stage: what it took from an earlier one
    weights: str | None = None  # evaluation: the weights scored
    trunk: str | None = None  # evaluation of a merged trunk
    norm_stats: dict[str, Any] | None = None
    predictions: dict[str, str] | None = None  # {split: saved predictions, relative to the file}
    balancing_dropped: str | None = None  # single-task mode: the balancing section left out
    baseline: dict[str, Any] | None = None
    comparison: dict[str, Comparison] | None = None
    formulas: dict[str, str] | None = None
    polytask_version: str | None = None
    data: dict[str, Any] | None = None
    config_hash: str | None = None
    seconds: float | None = None

    def task_names(self, auxiliary: bool = False) -> list[str]:
        return [t.name for t in self.tasks if auxiliary or not t.auxiliary]


def build_report(
    taskset: TaskSet,
    metrics: Mapping[str, Scores],
    *,
    mode: str,
    baseline: Mapping[str, Scores] | None = None,
    baseline_source: str | None = None,
    support: Mapping[str, Mapping[str, int]] | None = None,
    floor: Floor | None = None,
    intervals: Mapping[str, Intervals | str] | None = None,
    **extra: Any,
) -> Report:
    """Assemble the report; ``metrics`` and ``baseline`` are ``{split: {task: {metric: v}}}``.

    ``support`` (``{split: {task: rows}}``, :func:`~polytask.eval.floor.task_support`) and
    ``floor`` decide which gains are too unstable for the headline Δm; ``intervals`` are the
    bootstrap intervals per split (or, as text, why there are none). ``extra`` are the other :class:`Report` fields (validated: an
    unknown one is an error).
    """
    tasks = [
        TaskEntry(
            name=t.name, kind=t.kind, loss=t.loss, auxiliary=t.auxiliary,
            metrics={m.name: "higher is better" if m.higher_is_better else "lower is better"
                     for m in t.metrics},
        )
        for t in taskset.tasks
    ]  # fmt: skip
    fields: dict[str, Any] = {
        "mode": mode,
        "tasks": tasks,
        "metrics": {s: {t: dict(v) for t, v in per.items()} for s, per in metrics.items()},
        "means": {s: metric_means(taskset, per) for s, per in metrics.items()},
        **extra,
    }
    if baseline is not None:
        fields["comparison"] = {
            split: compare(
                taskset,
                per,
                baseline[split],
                (support or {}).get(split, {}),
                floor or Floor(),
                (intervals or {}).get(split),
            )
            for split, per in metrics.items()
            if split in baseline
        }
        fields["baseline"] = {
            "source": baseline_source,
            "metrics": {s: dict(v) for s, v in baseline.items()},
        }
        fields["formulas"] = FORMULAS
    return Report.model_validate(fields)


def compare(
    taskset: TaskSet, model: Scores, baseline: Scores, support: Mapping[str, int], floor: Floor,
    intervals: Intervals | str | None = None,
) -> Comparison:  # fmt: skip
    """One split of the model against its baseline (see :class:`Comparison`); ``intervals`` as
    text says why there are none (``{"unavailable": text}`` in the report)."""
    excluded = excluded_metrics(taskset, baseline, support, floor)
    ci: dict[str, Any] | None = None
    if isinstance(intervals, str):
        ci = {"unavailable": intervals}
    elif intervals is not None:
        ci = {
            "method": "paired percentile bootstrap over the split's rows",
            "level": intervals.level, "draws": intervals.draws,
            "delta_m": list(intervals.delta_m), "delta_p": list(intervals.delta_p),
            "gains": {t: {k: list(v) for k, v in per.items()} for t, per in intervals.gains.items()},
        }  # fmt: skip
    return Comparison(
        delta_m=delta_m(taskset, model, baseline, excluded),
        delta_p=delta_p(taskset, model, baseline, excluded),
        gains=relative_gains(taskset, model, baseline),
        baseline_means=metric_means(taskset, baseline),
        delta_m_all=delta_m(taskset, model, baseline),
        delta_p_all=delta_p(taskset, model, baseline),
        excluded=excluded,
        floor={"value": floor.value, "support": floor.support},
        intervals=ci,
    )


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def report_json(report: Report | Mapping[str, Any]) -> str:
    """``report`` as JSON text (NaN/Inf become null)."""
    data = (
        report.model_dump(mode="python", exclude_none=True)
        if isinstance(report, Report)
        else report
    )
    return json.dumps(_clean(data), indent=2, sort_keys=False) + "\n"


def write_report(path: str | Path, report: Report | Mapping[str, Any]) -> None:
    """Write ``report`` as JSON atomically (NaN/Inf become null)."""
    write_text(path, report_json(report))


def load_report(path: str | Path) -> Report:
    """Read a report JSON; a missing, malformed or unknown-version file is a one-line error."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise PolytaskError(f"report not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolytaskError(f"{path}: not a valid report JSON ({exc})") from None
    if not isinstance(data, dict) or "metrics" not in data:
        raise PolytaskError(f"{path}: not a polytask report (no 'metrics' key)")
    version = data.get("schema_version", 1)
    if version not in READS:
        raise PolytaskError(
            f"{path}: report schema_version {version!r}; this polytask ({__version__}) reads "
            f"versions {', '.join(map(str, READS))}"
        )
    data = {
        **data,
        "metrics": _restore_nan(data["metrics"]),
        "means": _restore_nan(data.get("means", {})),
    }
    data.setdefault("mode", "multi-task")
    data["schema_version"] = version
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        raise PolytaskError(f"{path}: not a polytask report: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"key {'.'.join(str(p) for p in err['loc'])!r}: {err['msg']}"


def _restore_nan(obj: Any) -> Any:
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _restore_nan(v) for k, v in obj.items()}
    return obj
