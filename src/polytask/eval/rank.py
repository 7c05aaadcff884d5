"""Mean rank across methods: each method's rank on every task, averaged over the tasks."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

from polytask._core import PolytaskError

__all__ = ["mean_rank", "mean_rank_line"]


def _finite(values: Iterable[float], what: str) -> None:
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise PolytaskError(f"{what} hold a non-finite value ({v}) at position {i}")


def mean_rank(
    scores: Mapping[str, Mapping[str, float]], higher_is_better: bool | Mapping[str, bool] = True
) -> dict[str, float]:
    r"""Each method's rank on every task (1 = best; tied methods share the mean of the ranks
    they span), averaged over the tasks: :math:`\bar r_m = \frac1T\sum_t r_{m,t}`.

    ``scores`` is ``{method: {task: value}}`` (every method scored on the same tasks, finite
    values); ``higher_is_better`` is one direction for all tasks or one per task.

    >>> mean_rank({"EW": {"a": 0.8, "b": 0.7}, "UW": {"a": 0.9, "b": 0.7}, "MGDA": {"a": 0.7, "b": 0.6}})
    {'EW': 1.75, 'UW': 1.25, 'MGDA': 3.0}
    """
    if not scores:
        raise PolytaskError("mean rank: no methods")
    tasks = set(next(iter(scores.values())))
    for method, per in scores.items():
        if set(per) != tasks:
            raise PolytaskError(
                f"mean rank: method {method!r} has tasks {sorted(per)}, not {sorted(tasks)}"
            )
        _finite(per.values(), f"scores of {method!r}")
    if not tasks:
        raise PolytaskError("mean rank: no tasks")
    total = dict.fromkeys(scores, 0.0)
    for task in tasks:
        up = higher_is_better if isinstance(higher_is_better, bool) else higher_is_better[task]
        values = {m: per[task] if up else -per[task] for m, per in scores.items()}
        for m, v in values.items():
            better = sum(w > v for w in values.values())
            tied = sum(w == v for w in values.values())
            total[m] += better + (tied + 1) / 2
    return {m: r / len(tasks) for m, r in total.items()}


def mean_rank_line(
    runs: Mapping[str, Sequence[Mapping[str, Mapping[str, float]]]], metric: str,
    higher_is_better: bool = True,
) -> str:  # fmt: skip
    """One line of :func:`mean_rank` over the tasks every method has, from each method's runs
    (``{task: {metric: value}}`` per seed, averaged over seeds; NaN left out); empty with fewer
    than two methods or no shared task.

    >>> mean_rank_line({"EW": [{"a": {"auc": 0.8}}], "UW": [{"a": {"auc": 0.9}}]}, "auc")
    'mean rank over 1 task (auc, mean over seeds; 1 = best): EW 2.00, UW 1.00'
    """
    means: dict[str, dict[str, float]] = {}
    for method, seeds in runs.items():
        per: dict[str, list[float]] = {}
        for scores in seeds:
            for task, values in scores.items():
                v = values.get(metric, math.nan)
                if math.isfinite(v):
                    per.setdefault(task, []).append(v)
        means[method] = {t: statistics.mean(v) for t, v in per.items()}
    tasks = set.intersection(*(set(m) for m in means.values())) if means else set()
    if len(means) < 2 or not tasks:
        return ""
    ranks = mean_rank({k: {t: v[t] for t in tasks} for k, v in means.items()}, higher_is_better)
    n = f"{len(tasks)} task{'s' * (len(tasks) != 1)}"
    cells = ", ".join(f"{k} {r:.2f}" for k, r in ranks.items())
    return f"mean rank over {n} ({metric}, mean over seeds; 1 = best): {cells}"
