"""Auxiliary tasks: reported per task, left out of the mean, the selection rule and Δm / Δp."""

from __future__ import annotations

import math

import pytest
import torch

from polytask.eval import SelectionRule, build_report, delta_m, delta_p, evaluate_split
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData
from polytask.tasks.ssl import ContrastiveViews, FeatureDropout, MaskedFeatures, pretext_split

TS = TaskSet(
    [
        Task("a", "regression"),
        Task("b", "regression"),
        Task(
            "recon", "reconstruction", num_classes=4, metric_names=("rmse", "mae"), auxiliary=True
        ),
    ]
)
SCORES = {
    "a": {"mae": 1.0, "rmse": 2.0},
    "b": {"mae": 3.0, "rmse": 4.0},
    "recon": {"mae": 100.0, "rmse": 7.0},
}


def test_mean_selection_skips_auxiliary_tasks() -> None:
    rule = SelectionRule.parse("mean:mae", TS)
    assert rule.score(SCORES) == pytest.approx(2.0)  # (1 + 3) / 2, not (1 + 3 + 100) / 3
    assert not rule.higher_is_better and "auxiliary tasks excluded" in rule.describe()
    # naming the auxiliary task explicitly selects on it
    assert SelectionRule.parse("recon:mae", TS).score(SCORES) == 100.0
    # a run with only auxiliary tasks (pre-training) averages over them
    only = TaskSet([TS["recon"], Task("r2", "reconstruction", num_classes=2, auxiliary=True)])
    pre = SelectionRule.parse("mean:rmse", only)
    assert pre.score({"recon": {"rmse": 1.0}, "r2": {"rmse": 3.0}}) == pytest.approx(2.0)


def test_report_and_delta_leave_auxiliary_out() -> None:
    base = {"a": {"mae": 2.0, "rmse": 2.0}, "b": {"mae": 3.0, "rmse": 4.0}}
    # gains: a.mae +0.5, a.rmse 0, b.mae 0, b.rmse 0 → Δm = -100·0.5/4 = -12.5; Δp = 100·(0.25+0)/2
    assert delta_m(TS, SCORES, base) == pytest.approx(-12.5)
    assert delta_p(TS, SCORES, base) == pytest.approx(12.5)
    report = build_report(TS, {"test": SCORES}, mode="multi-task", baseline={"test": base})
    assert report.means["test"] == {"mae": 2.0, "rmse": 3.0}
    assert report.metrics["test"]["recon"]["mae"] == 100.0
    flags = {t.name: t.auxiliary for t in report.tasks}
    assert flags == {"a": False, "b": False, "recon": True}
    assert report.comparison is not None and "recon" not in report.comparison["test"].gains


def test_evaluate_split_with_generated_pretext_data() -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(30, 6, generator=g) < 0.5).float()
    split = TensorData(x, {"a": torch.randn(30, generator=g)})
    pretexts = {"recon": MaskedFeatures(0.5), "views": ContrastiveViews([FeatureDropout(0.1)])}
    data = pretext_split(split, pretexts, seed=0)
    assert data["a"] is split and len(data["views"]) == 60
    assert torch.equal(pretext_split(split, pretexts, 0)["recon"].inputs, data["recon"].inputs)
    ts = TaskSet(
        [
            Task("a", "regression"),
            Task("recon", "reconstruction", num_classes=6, auxiliary=True),
            Task("views", "contrastive", num_classes=4, auxiliary=True),
        ]
    )
    torch.manual_seed(0)
    model = build_model(mlp_trunk(6, (8,)), ts.tasks, 8)
    metrics = evaluate_split(model, ts, data, batch_size=7)  # chunks do not change the metrics
    assert list(metrics) == ["a", "recon", "views"]
    with torch.no_grad():
        pred = model(data["recon"].inputs, ["recon"])["recon"]
        t = data["recon"].targets["recon"]
        m = ~torch.isnan(t)
        rmse = math.sqrt(float(((pred[m] - t[m]) ** 2).mean()))
    assert metrics["recon"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    assert 0.0 <= metrics["views"]["retrieval_acc"] <= 1.0
    assert metrics["views"] == evaluate_split(model, ts, data, batch_size=1000)["views"]
