"""evaluate_split scores binary ROC-AUC / PR-AUC tasks in one pass, with the per-task values."""

import math

import pytest
import torch

from polytask.eval import evaluate_split
from polytask.eval.predict import predict
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import TensorData

NAN = math.nan
TASKS = TaskSet(
    [
        Task("b1", "binary"),
        Task("b2", "binary", metric_names=("pr_auc",)),
        Task("acc", "binary", metric_names=("roc_auc", "accuracy")),  # per task: accuracy
        Task("one", "binary"),  # one class only: NaN
        Task("r", "regression"),
        Task("ml", "multilabel", num_classes=2),
    ]
)


def _data(seed: int = 0, n: int = 60) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = {
        "b1": (x[:, 0] > 0).float(),
        "b2": (x[:, 1] > 0.5).float(),
        "acc": (x[:, 2] > 0).float(),
        "one": torch.ones(n),
        "r": x[:, 3] * 2,
        "ml": (torch.rand(n, 2, generator=g) < 0.5).float(),
    }
    y["b1"][::3] = NAN
    y["one"][::2] = NAN
    return TensorData(x, y)


def _per_task(model, data):
    preds = predict(model, data, TASKS.names)
    return {t.name: t.compute_metrics(preds[t.name], data.targets[t.name]) for t in TASKS.tasks}


def _check(got, want):
    assert list(got) == list(want)
    for name in want:
        assert list(got[name]) == list(want[name])  # the task's metrics, in its order
        for metric, value in want[name].items():
            assert got[name][metric] == pytest.approx(value, abs=1e-6, nan_ok=True)


def test_shared_data_equals_the_per_task_metrics():
    torch.manual_seed(0)
    model = build_model(mlp_trunk(4, (8,)), TASKS.tasks, 8)
    data = _data()
    got = evaluate_split(model, TASKS, data)
    _check(got, _per_task(model, data))
    assert math.isnan(got["one"]["roc_auc"]) and math.isnan(got["one"]["pr_auc"])
    assert list(got["b2"]) == ["pr_auc"] and list(got["acc"]) == ["roc_auc", "accuracy"]


def test_per_task_data_equals_the_per_task_metrics():
    torch.manual_seed(0)
    model = build_model(mlp_trunk(4, (8,)), TASKS.tasks, 8)
    shared, other = _data(1), _data(2)
    data = {n: (other if n in ("b2", "r") else shared) for n in TASKS.names}
    got = evaluate_split(model, TASKS, data)
    want = {}
    for name in TASKS.names:
        part = data[name]
        pred = predict(model, part, [name])[name]
        want[name] = TASKS[name].compute_metrics(pred, part.targets[name])
    _check(got, want)
