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

from polytask._core import PolytaskError, write_text
from polytask.tasks import TaskSet

from .delta import Scores, delta_m, delta_p, relative_gains

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


def build_report(
    taskset: TaskSet,
    metrics: Mapping[str, Scores],
    *,
    baseline: Mapping[str, Scores] | None = None,
    baseline_source: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Assemble the report dict; ``metrics`` and ``baseline`` are ``{split: {task: {metric: v}}}``."""
    report: dict[str, Any] = {
        "tasks": [
            {
                "name": t.name,
                "kind": t.kind,
                "loss": t.loss,
                "auxiliary": t.auxiliary,
                "metrics": {
                    m.name: "higher is better" if m.higher_is_better else "lower is better"
                    for m in t.metrics
                },
            }
            for t in taskset.tasks
        ],
        "metrics": {s: {t: dict(v) for t, v in per.items()} for s, per in metrics.items()},
        "means": {s: metric_means(taskset, per) for s, per in metrics.items()},
    }
    report.update(extra)
    if baseline is not None:
        comparison = {}
        for split, per in metrics.items():
            if split not in baseline:
                continue
            comparison[split] = {
                "delta_m": delta_m(taskset, per, baseline[split]),
                "delta_p": delta_p(taskset, per, baseline[split]),
                "gains": relative_gains(taskset, per, baseline[split]),
                "baseline_means": metric_means(taskset, baseline[split]),
            }
        report["baseline"] = {
            "source": baseline_source,
            "metrics": {s: dict(v) for s, v in baseline.items()},
        }
        report["comparison"] = comparison
        report["formulas"] = FORMULAS
    return report


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_report(path: str | Path, report: Mapping[str, Any]) -> None:
    """Write ``report`` as JSON atomically (NaN/Inf become null)."""
    write_text(path, json.dumps(_clean(report), indent=2, sort_keys=False) + "\n")


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report JSON; a missing or malformed file is a one-line error."""
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
    data["metrics"] = _restore_nan(data["metrics"])
    return data


def _restore_nan(obj: Any) -> Any:
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _restore_nan(v) for k, v in obj.items()}
    return obj
