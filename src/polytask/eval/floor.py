r"""Which relative gains are too unstable to enter the headline Δm.

A relative gain :math:`g = s\,(M - B)/|B|` explodes when the baseline :math:`B` is near zero (R²
of 0.01, an MAE of 0.002), and means nothing when the metric rests on a handful of test rows (a
ROC-AUC over 3 positives). A :class:`Floor` names both limits:

* ``value``: metrics whose range crosses zero (R²: ``MetricSpec.crosses_zero``) and whose
  baseline satisfies :math:`|B| <` ``value`` are left out (an error metric such as MAE is
  positive and scale-dependent, so a small value is no reason; a rate such as ROC-AUC is judged
  by its support);
* ``support``: tasks whose test support is below ``support`` are left out, where the support of a
  binary (or multi-label) task is the smaller of its labelled positives and negatives, and of any
  other task its labelled rows.

Left-out metrics are listed in the report with the reason, kept out of the headline Δm and Δp,
and counted in ``delta_m_all`` / ``delta_p_all`` (every metric, as before), so nothing is hidden.

>>> Floor().reason(0.17, 3, crosses_zero=False)
'support 3 < 10'
>>> Floor().reason(0.004, 500, crosses_zero=True)
'|baseline| 0.004 < 0.05'
>>> Floor().reason(0.004, 500, crosses_zero=False) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from polytask.tasks import TaskSet

Scores = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class Floor:
    """The limits below which a gain is left out of the headline Δm (see the module)."""

    value: float = 0.05
    support: int = 10

    def reason(self, baseline: float, support: int | None, *, crosses_zero: bool) -> str | None:
        """Why a metric with this baseline value and task support is left out, or None."""
        if support is not None and support < self.support:
            return f"support {support} < {self.support}"
        if crosses_zero and not math.isnan(baseline) and abs(baseline) < self.value:
            return f"|baseline| {abs(baseline):.3g} < {self.value:g}"
        return None


def task_support(kind: str, target: Tensor) -> int:
    """Labelled positives-or-negatives (the smaller) of a binary or multi-label target, else
    labelled rows (rows with any label)."""
    t = target.detach().float()
    labelled = ~torch.isnan(t)
    if kind in ("binary", "multilabel"):
        pos = int((torch.nan_to_num(t, nan=0.0) > 0.5).sum())
        return min(pos, int(labelled.sum()) - pos)
    rows = labelled if t.dim() == 1 else labelled.reshape(t.shape[0], -1).any(dim=1)
    return int(rows.sum())


def excluded_metrics(
    taskset: TaskSet, baseline: Scores, support: Mapping[str, int], floor: Floor
) -> dict[str, dict[str, str]]:
    """``{task: {metric: reason}}`` of the supervised metrics the floor leaves out."""
    out: dict[str, dict[str, str]] = {}
    for task in taskset.tasks:
        if task.auxiliary:
            continue
        for spec in task.metrics:
            b = baseline.get(task.name, {}).get(spec.name, math.nan)
            why = floor.reason(b, support.get(task.name), crosses_zero=spec.crosses_zero)
            if why is not None:
                out.setdefault(task.name, {})[spec.name] = why
    return out
