r"""Multi-task vs single-task scores: Δm (all metrics pooled) and Δp (per task first).

Let :math:`M_{t,i}` be metric ``i`` of task ``t`` for the multi-task model, :math:`B_{t,i}` the
single-task baseline's, and :math:`s_{t,i} = +1` if higher is better, else :math:`-1`.
The signed relative gain of one metric is :math:`g_{t,i} = s_{t,i}\,(M_{t,i} - B_{t,i}) / |B_{t,i}|`.

* **Δm** (Maninis et al. 2019; the Nash-MTL / FAMO tables) — average over *all* metrics of all
  tasks, reported with the sign flipped so that **lower is better**:
  :math:`\Delta_m = -\frac{100}{K}\sum_{t,i} g_{t,i}`, :math:`K` the total number of metrics.
* **Δp** (LibMTL) — average within each task first, then over tasks, **higher is better**:
  :math:`\Delta_p = \frac{100}{T}\sum_t \frac{1}{N_t}\sum_i g_{t,i}`.

The two rank methods differently when tasks have different numbers of metrics. Auxiliary
(self-supervised) tasks have no baseline to be judged against and are left out of both. Metrics
that are NaN on either side (e.g. ROC-AUC on a split with one class) are left out and counted in
``skipped``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from polytask._core import PolytaskError
from polytask.tasks import TaskSet

Scores = Mapping[str, Mapping[str, float]]
Excluded = Mapping[str, Collection[str]]  # {task: metric names} left out


def relative_gains(
    taskset: TaskSet, model: Scores, baseline: Scores, exclude: Excluded | None = None
) -> dict[str, dict[str, float]]:
    """Signed relative gain ``g_{t,i}`` (fraction; positive = better than the baseline).

    Auxiliary tasks are skipped (they are not part of what the model is judged on), and so are
    the metrics in ``exclude`` (``{task: metrics}``, e.g. those under a
    :class:`~polytask.eval.floor.Floor`).
    """
    exclude = exclude or {}
    out: dict[str, dict[str, float]] = {}
    for task in taskset.tasks:
        if task.auxiliary:
            continue
        if task.name not in model or task.name not in baseline:
            raise PolytaskError(
                f"task {task.name!r} is missing from the model or the baseline scores"
            )
        gains = {}
        for spec in task.metrics:
            if spec.name in exclude.get(task.name, ()):
                continue
            m = model[task.name].get(spec.name, math.nan)
            b = baseline[task.name].get(spec.name, math.nan)
            if math.isnan(m) or math.isnan(b) or b == 0:
                continue
            sign = 1.0 if spec.higher_is_better else -1.0
            gains[spec.name] = sign * (m - b) / abs(b)
        out[task.name] = gains
    return out


def delta_m(
    taskset: TaskSet, model: Scores, baseline: Scores, exclude: Excluded | None = None
) -> float:
    """Δm in percent over all metrics (but ``exclude``); lower is better (negative = improvement)."""
    gains = [
        g
        for per in relative_gains(taskset, model, baseline, exclude).values()
        for g in per.values()
    ]
    return -100.0 * sum(gains) / len(gains) if gains else math.nan


def delta_p(
    taskset: TaskSet, model: Scores, baseline: Scores, exclude: Excluded | None = None
) -> float:
    """Δp in percent, averaged per task first (but ``exclude``); higher is better."""
    gains = relative_gains(taskset, model, baseline, exclude)
    per_task = [sum(p.values()) / len(p) for p in gains.values() if p]
    return 100.0 * sum(per_task) / len(per_task) if per_task else math.nan
