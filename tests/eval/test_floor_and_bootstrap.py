"""Δm you can trust: unstable gains are flagged and left out of the headline, and every gain and
Δm gets a paired bootstrap interval over the test rows."""

from __future__ import annotations

import math

import pytest
import torch

from polytask._core import PolytaskError
from polytask.eval import (
    Floor,
    Predictions,
    bootstrap_intervals,
    build_report,
    split_metrics,
    task_support,
)
from polytask.tasks import Task, TaskSet

BIN = TaskSet([Task("a", "binary"), Task("b", "binary"), Task("rare", "binary")])


def test_support_of_each_kind() -> None:
    nan = math.nan
    assert task_support("binary", torch.tensor([1.0, 0.0, 0.0, nan, 1.0, 0.0])) == 2
    assert task_support("binary", torch.tensor([1.0, 1.0, 1.0, 0.0])) == 1
    assert task_support("regression", torch.tensor([0.3, nan, -2.0])) == 2
    assert task_support("multilabel", torch.tensor([[1.0, nan], [0.0, 0.0]])) == 1


def test_a_planted_near_zero_task_is_flagged_and_left_out_of_the_headline() -> None:
    model = {"a": {"roc_auc": 0.88, "pr_auc": 0.44}, "b": {"roc_auc": 0.72, "pr_auc": 0.30},
             "rare": {"roc_auc": 0.60, "pr_auc": 0.10}}  # fmt: skip
    base = {"a": {"roc_auc": 0.80, "pr_auc": 0.40}, "b": {"roc_auc": 0.80, "pr_auc": 0.30},
            "rare": {"roc_auc": 0.17, "pr_auc": 0.016}}  # fmt: skip
    support = {"test": {"a": 120, "b": 95, "rare": 3}}  # 3 positives in the test split
    rep = build_report(
        BIN, {"test": model}, mode="multi-task", baseline={"test": base}, support=support
    )
    assert rep.comparison is not None
    comp = rep.comparison["test"]
    assert comp.excluded == {"rare": {"roc_auc": "support 3 < 10", "pr_auc": "support 3 < 10"}}
    # headline: gains of a and b only = (0.1, 0.1, -0.1, 0.0) -> Δm = -100/4 * 0.1 = -2.5
    assert comp.delta_m == pytest.approx(-2.5)
    assert comp.delta_p == pytest.approx(100 * (0.1 + (-0.1 + 0.0) / 2) / 2)
    # every metric: + rare's gains 0.43/0.17 and 0.084/0.016, which would dominate
    all_gains = [0.1, 0.1, -0.1, 0.0, 0.43 / 0.17, 0.084 / 0.016]
    assert comp.delta_m_all == pytest.approx(-100 / 6 * sum(all_gains))
    assert comp.gains["rare"]["pr_auc"] == pytest.approx(0.084 / 0.016)  # shown, not hidden
    assert comp.floor == {"value": 0.05, "support": 10}


def test_the_value_floor_applies_to_metrics_that_cross_zero_only() -> None:
    ts = TaskSet([Task("y", "regression", metric_names=("mae", "r2"))])
    rep = build_report(
        ts, {"test": {"y": {"mae": 0.011, "r2": 0.05}}}, mode="multi-task",
        baseline={"test": {"y": {"mae": 0.010, "r2": 0.01}}}, support={"test": {"y": 500}},
    )  # fmt: skip
    assert rep.comparison is not None
    comp = rep.comparison["test"]
    assert comp.excluded == {"y": {"r2": "|baseline| 0.01 < 0.05"}}  # R² 0.01 -> +400% otherwise
    assert comp.delta_m == pytest.approx(10.0)  # MAE 0.010 -> 0.011: 10% worse, kept
    assert comp.delta_m_all == pytest.approx(-100 / 2 * (-0.1 + 4.0))
    strict = build_report(
        ts, {"test": {"y": {"mae": 0.011, "r2": 0.05}}}, mode="multi-task",
        baseline={"test": {"y": {"mae": 0.010, "r2": 0.01}}}, floor=Floor(value=0.0, support=0),
    )  # fmt: skip
    assert strict.comparison is not None and strict.comparison["test"].excluded == {}


def _preds(seed: int, n: int = 300) -> tuple[Predictions, Predictions]:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, 2, generator=g) < 0.3).float()
    y[torch.rand(n, 2, generator=g) < 0.1] = math.nan
    signal = torch.nan_to_num(y, nan=0.5)
    model = signal + 0.8 * torch.randn(n, 2, generator=g)
    base = signal + 1.2 * torch.randn(n, 2, generator=g)
    targets = {"a": y[:, 0], "b": y[:, 1]}
    groups = {"a": 0, "b": 0}
    return (
        Predictions({"a": model[:, 0], "b": model[:, 1]}, targets, groups),
        Predictions({"a": base[:, 0], "b": base[:, 1]}, targets, groups),
    )


TWO = TaskSet([Task("a", "binary"), Task("b", "binary")])


def test_identical_runs_have_zero_width_intervals_at_zero() -> None:
    model, _ = _preds(0)
    iv = bootstrap_intervals(TWO, model, model, draws=50)
    assert iv.delta_m == (0.0, 0.0) and iv.delta_p == (0.0, 0.0)
    assert all(v == (0.0, 0.0) for per in iv.gains.values() for v in per.values())


def test_one_draw_equals_the_metrics_on_the_drawn_rows() -> None:
    model, base = _preds(1)
    iv = bootstrap_intervals(TWO, model, base, draws=1, seed=7)
    idx = torch.randint(0, 300, (300,), generator=torch.Generator().manual_seed(7))
    drawn = [
        Predictions(
            {t: p.preds[t][idx] for t in "ab"}, {t: p.targets[t][idx] for t in "ab"}, p.groups
        )
        for p in (model, base)
    ]
    m, b = (split_metrics(TWO, d) for d in drawn)
    gains = [(m[t][k] - b[t][k]) / b[t][k] for t in "ab" for k in ("roc_auc", "pr_auc")]
    assert iv.delta_m[0] == pytest.approx(-100 / 4 * sum(gains), abs=1e-9)
    assert iv.delta_m[0] == iv.delta_m[1]


def test_the_interval_covers_the_point_estimate_and_has_width() -> None:
    model, base = _preds(2)
    rep = build_report(
        TWO, {"test": split_metrics(TWO, model)}, mode="multi-task",
        baseline={"test": split_metrics(TWO, base)},
        intervals={"test": bootstrap_intervals(TWO, model, base, draws=200)},
    )  # fmt: skip
    assert rep.comparison is not None
    comp = rep.comparison["test"]
    assert comp.intervals is not None and comp.delta_m is not None
    lo, hi = comp.intervals["delta_m"]
    assert lo < comp.delta_m < hi and hi - lo > 1.0  # 300 rows: a few points of Δm either way
    assert comp.delta_m < 0  # the model's noise is lower: better than its baseline


def test_runs_on_other_rows_are_refused() -> None:
    model, base = _preds(3)
    other = Predictions(base.preds, {**base.targets, "a": base.targets["a"][:-1]}, base.groups)
    with pytest.raises(PolytaskError, match="task 'a' was evaluated on other rows"):
        bootstrap_intervals(TWO, model, other, draws=2)
