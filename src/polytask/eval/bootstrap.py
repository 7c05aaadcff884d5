r"""Confidence intervals of the gains and of Δm / Δp over the test set: the paired bootstrap.

Draw, ``n`` times, the test rows with replacement — the same rows for the model and its
single-task baseline — and compute every metric of both on the drawn rows; each draw gives every
relative gain :math:`g_{t,i}`, Δm and Δp. The interval at level :math:`1-\alpha` is the
:math:`\alpha/2` and :math:`1-\alpha/2` quantiles of the ``n`` values (percentile bootstrap).
Tasks that share their rows (one table with several label columns) are drawn together, so the
correlation between tasks enters the interval of Δm; tasks with rows of their own (one data set
per task) are drawn independently. Metrics undefined on a draw (one class only) are left out of
that draw's Δm. The metrics the :class:`~polytask.eval.floor.Floor` excludes are left out, as in
the headline Δm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks import TaskSet

from .delta import Excluded, delta_m, delta_p, relative_gains
from .predict import task_metrics
from .predictions import Predictions

Interval = tuple[float, float]


@dataclass(frozen=True)
class Intervals:
    """Bootstrap intervals: per task and metric gain (fraction), Δm and Δp (percent)."""

    level: float
    draws: int
    gains: dict[str, dict[str, Interval]]
    delta_m: Interval
    delta_p: Interval


def _check_rows(model: Predictions, baseline: Predictions, names: list[str]) -> None:
    for t in names:
        if t not in baseline.targets:
            raise PolytaskError(f"bootstrap: the baseline has no predictions for task {t!r}")
        a, b = model.targets[t], baseline.targets[t]
        if a.shape != b.shape or not torch.equal(torch.isnan(a), torch.isnan(b)):
            raise PolytaskError(
                f"bootstrap: task {t!r} was evaluated on other rows than its baseline "
                f"({tuple(a.shape)} vs {tuple(b.shape)}); compare runs on the same split"
            )


def _draw(model: Predictions, names: list[str], gen: torch.Generator) -> dict[str, Tensor]:
    """One draw of row indices per task (shared within a group)."""
    by_group: dict[int, Tensor] = {}
    out = {}
    for t in names:
        g = model.groups.get(t, -1 - len(by_group))
        if g not in by_group:
            n = model.targets[t].shape[0]
            by_group[g] = torch.randint(0, n, (n,), generator=gen)
        out[t] = by_group[g]
    return out


def _quantiles(values: list[float], level: float) -> Interval:
    kept = torch.tensor([v for v in values if not math.isnan(v)], dtype=torch.float64)
    if kept.numel() == 0:
        return (math.nan, math.nan)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(kept, q).tolist()
    return (lo, hi)


def bootstrap_intervals(
    taskset: TaskSet, model: Predictions, baseline: Predictions, *,
    exclude: Excluded | None = None, draws: int = 200, level: float = 0.95, seed: int = 0,
) -> Intervals:  # fmt: skip
    """Paired percentile-bootstrap intervals of every gain, Δm and Δp (see the module)."""
    names = [t.name for t in taskset.tasks if not t.auxiliary]
    _check_rows(model, baseline, names)
    gen = torch.Generator().manual_seed(seed)
    gains: dict[str, dict[str, list[float]]] = {t: {} for t in names}
    dms, dps = [], []
    for _ in range(draws):
        idx = _draw(model, names, gen)
        targets = {t: model.targets[t][idx[t]] for t in names}
        m = task_metrics(taskset, names, {t: model.preds[t][idx[t]] for t in names}, targets)
        b = task_metrics(taskset, names, {t: baseline.preds[t][idx[t]] for t in names}, targets)
        for t, per in relative_gains(taskset, m, b, exclude).items():
            for metric, g in per.items():
                gains[t].setdefault(metric, []).append(g)
        dms.append(delta_m(taskset, m, b, exclude))
        dps.append(delta_p(taskset, m, b, exclude))
    return Intervals(
        level, draws,
        {t: {k: _quantiles(v, level) for k, v in per.items()} for t, per in gains.items()},
        _quantiles(dms, level), _quantiles(dps, level),
    )  # fmt: skip
