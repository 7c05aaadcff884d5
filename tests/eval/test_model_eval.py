import math

import pytest
import torch

from polytask.eval import SelectionRule, build_report, delta_m, delta_p, relative_gains
from polytask.models import LinearHeads, MultiTaskModel, build_model, mlp_trunk
from polytask.tasks import Task, TaskSet

TS = TaskSet([Task("a", "binary"), Task("c", "multiclass", num_classes=3), Task("r", "regression")])


def test_model_shapes_and_forward_split():
    model = build_model(mlp_trunk(8, (16, 4)), TS.tasks, 4)
    x = torch.randn(5, 8)
    out = model(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"a": (5,), "c": (5, 3), "r": (5,)}
    z = model.forward_features(x)
    assert torch.equal(model.forward_heads(z, ["r"])["r"], out["r"])
    assert len(model.shared_parameters()) == 4 and len(model.task_parameters()) == 2


def test_stacked_heads_give_each_task_only_its_own_gradient():
    heads = LinearHeads(4, {"a": 1, "b": 2}, {"a": True, "b": False})
    model = MultiTaskModel(torch.nn.Identity(), heads)
    out = model(torch.randn(3, 4))
    out["a"].sum().backward()
    grad = heads.linear.weight.grad
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0


def test_non_finite_outputs_are_an_error_not_a_metric():
    # e.g. a merged trunk whose batch-norm running variance went negative: NaN on some rows
    from polytask._core import PolytaskError
    from polytask.eval import evaluate
    from polytask.tasks.data import TensorData

    model = build_model(mlp_trunk(2, (4,)), TS.tasks, 4)
    x = torch.randn(6, 2)
    x[[1, 4], 0] = float("nan")
    targets = {"a": torch.ones(6), "c": torch.zeros(6), "r": torch.zeros(6)}
    data = TensorData(x, targets, "held-out")
    with pytest.raises(
        PolytaskError, match=r"task 'a': .* NaN or Inf on 2 of 6 rows of held-out \(test split\)"
    ):
        evaluate(model, TS, {"test": data})


def test_delta_m_and_delta_p_hand_values():
    ts = TaskSet(
        [
            Task("x", "binary", metric_names=("roc_auc",)),
            Task("y", "regression", metric_names=("mae", "r2")),
        ]
    )
    base = {"x": {"roc_auc": 0.80}, "y": {"mae": 2.0, "r2": 0.50}}
    mt = {"x": {"roc_auc": 0.84}, "y": {"mae": 2.2, "r2": 0.55}}
    # gains: x +0.05; y mae -0.10 (lower is better), r2 +0.10
    g = relative_gains(ts, mt, base)
    assert g["x"]["roc_auc"] == pytest.approx(0.05) and g["y"]["mae"] == pytest.approx(-0.10)
    assert delta_m(ts, mt, base) == pytest.approx(-100 * (0.05 - 0.10 + 0.10) / 3)
    assert delta_p(ts, mt, base) == pytest.approx(100 * (0.05 + 0.0) / 2)


def test_selection_rule_and_report():
    rule = SelectionRule.parse("mean:roc_auc", TS)
    assert (
        rule.higher_is_better
        and rule.score({"a": {"roc_auc": 0.7}, "b": {"roc_auc": math.nan}}) == 0.7
    )
    low = SelectionRule.parse("r:mae", TS)
    assert not low.higher_is_better and low.better(1.0, 2.0) and not low.better(3.0, 2.0)
    ts = TaskSet([Task("x", "binary", metric_names=("roc_auc",))])
    rep = build_report(
        ts, {"test": {"x": {"roc_auc": 0.9}}}, mode="multi-task",
        baseline={"test": {"x": {"roc_auc": 0.8}}},
    )  # fmt: skip
    assert rep.comparison is not None and rep.formulas is not None
    assert rep.comparison["test"].delta_m == pytest.approx(-12.5) and "delta_p" in rep.formulas
