import math

import pytest
import torch

from polytask._core import PolytaskError
from polytask.tasks import Task, TaskSet

NAN = math.nan


def test_bce_masks_missing_labels_and_matches_hand_value():
    task = Task("t", "binary")
    pred = torch.tensor([0.0, 2.0, -1.0])
    target = torch.tensor([1.0, NAN, 0.0])
    # -[log σ(0)] and -[log(1-σ(-1))] averaged over the 2 labelled entries
    expected = (math.log(2) + math.log(1 + math.exp(-1))) / 2
    assert task.compute_loss(pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_missing_labels_are_not_negatives():
    task = Task("t", "binary")
    pred = torch.tensor([5.0, 5.0])
    with_missing = task.compute_loss(pred, torch.tensor([1.0, NAN]))
    with_zero = task.compute_loss(pred, torch.tensor([1.0, 0.0]))
    assert with_missing.item() < 0.01 < with_zero.item()


def test_all_missing_batch_gives_zero_loss_with_gradient():
    pred = torch.tensor([0.3, -0.2], requires_grad=True)
    loss = Task("t", "binary").compute_loss(pred, torch.tensor([NAN, NAN]))
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None and pred.grad.abs().sum() == 0


def test_multiclass_and_regression_losses():
    ce = Task("c", "multiclass", num_classes=3).compute_loss(
        torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), torch.tensor([2.0, NAN])
    )
    assert ce.item() == pytest.approx(math.log(3), rel=1e-6)
    mse = Task("r", "regression").compute_loss(
        torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, NAN, 5.0])
    )
    assert mse.item() == pytest.approx((1 + 4) / 2)
    l1 = Task("r", "regression", loss="l1").compute_loss(
        torch.tensor([1.0, 3.0]), torch.tensor([0.0, 5.0])
    )
    assert l1.item() == pytest.approx(1.5)


def test_multilabel_loss_and_metrics_mask_per_label():
    task = Task("m", "multilabel", num_classes=2)
    pred = torch.tensor([[2.0, -1.0], [-2.0, 1.0], [1.0, 3.0], [-1.0, -3.0]])
    target = torch.tensor([[1.0, NAN], [0.0, 1.0], [1.0, NAN], [0.0, 0.0]])
    m = task.compute_metrics(pred, target)
    assert m["roc_auc"] == pytest.approx(1.0)
    labelled = ~torch.isnan(target)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        pred[labelled], target[labelled]
    )
    assert task.compute_loss(pred, target).item() == pytest.approx(expected.item())


def test_metrics_values_and_directions():
    b = Task("b", "binary", metric_names=("roc_auc", "accuracy", "f1"))
    m = b.compute_metrics(
        torch.tensor([3.0, -3.0, 1.0, -1.0, 0.0]), torch.tensor([1.0, 0.0, 0.0, 1.0, NAN])
    )
    assert m["roc_auc"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.5)
    r = Task("r", "regression")
    mr = r.compute_metrics(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 3.0, 2.0]))
    assert mr["mae"] == pytest.approx(1.0) and mr["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert [s.higher_is_better for s in r.metrics] == [False, False, True]
    assert math.isnan(
        b.compute_metrics(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]))["roc_auc"]
    )


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"kind": "ordinal"}, "unknown kind"),
        ({"kind": "binary", "loss": "mse"}, "does not fit"),
        ({"kind": "binary", "metric_names": ("rmse",)}, "unknown metric"),
        ({"kind": "multiclass"}, "num_classes"),
        ({"kind": "binary", "weight": -1.0}, "weight"),
    ],
)
def test_task_validation_errors(kwargs, needle):
    with pytest.raises(PolytaskError, match=needle):
        Task("t", **kwargs)


def test_taskset_order_and_errors():
    ts = TaskSet([Task("a", "binary"), Task("b", "regression")])
    assert ts.names == ("a", "b") and ts.index("b") == 1 and ts.subset(["b"]).names == ("b",)
    with pytest.raises(PolytaskError, match="duplicate"):
        TaskSet([Task("a", "binary"), Task("a", "binary")])
    with pytest.raises(PolytaskError, match="unknown task 'c'"):
        ts["c"]
