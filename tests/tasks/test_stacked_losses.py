"""Stacked masked losses: one [B, K] call equals the per-task masked loss of every column."""

import math

import pytest
import torch

from polytask.tasks.losses import LOSSES
from polytask.tasks.stacked_losses import STACKED_LOSSES, stacked_bce, stacked_mse

NAN = math.nan


def _columns(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[7, 6] logits and binary targets: a normal column, all missing, one label, constant 1,
    constant 0, and a column with every row labelled."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(7, 6, generator=g)
    y = (torch.rand(7, 6, generator=g) < 0.5).float()
    y[::3, 0] = NAN
    y[:, 1] = NAN
    y[:, 2] = NAN
    y[4, 2] = 1.0
    y[:, 3] = torch.tensor([1.0, NAN, 1.0, 1.0, NAN, 1.0, 1.0])
    y[:, 4] = torch.tensor([0.0, 0.0, NAN, 0.0, 0.0, 0.0, NAN])
    return pred, y


@pytest.mark.parametrize("loss", sorted(STACKED_LOSSES))
def test_every_column_equals_the_per_task_masked_loss(loss):
    pred, y = _columns()
    if loss != "bce":
        y = torch.where(torch.isnan(y), y, y * 3.0 - 1.5 + pred.detach() * 0.7)
    values, counts = STACKED_LOSSES[loss](pred, y)
    expected = torch.stack([LOSSES[loss](pred[:, k], y[:, k]) for k in range(6)])
    assert torch.allclose(values, expected, atol=1e-6, rtol=0)
    assert counts.tolist() == [int((~torch.isnan(y[:, k])).sum()) for k in range(6)]
    assert counts.dtype == torch.int64


def test_pinned_values_and_counts():
    # logit 0 -> BCE log 2 whatever the label; logit 2 on label 1 -> log(1 + e^-2)
    pred = torch.tensor([[0.0, 2.0, 5.0], [0.0, 2.0, -1.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([[1.0, 1.0, NAN], [0.0, NAN, NAN], [NAN, NAN, NAN]])
    values, counts = stacked_bce(pred, y)
    assert values.tolist() == pytest.approx([math.log(2), math.log1p(math.exp(-2)), 0.0])
    assert counts.tolist() == [2, 1, 0]
    values, counts = stacked_mse(pred, torch.tensor([[1.0, NAN, NAN], [3.0, NAN, NAN], [NAN] * 3]))
    assert values.tolist() == pytest.approx([(1 + 9) / 2, 0.0, 0.0])
    assert counts.tolist() == [2, 0, 0]


def test_gradients_equal_the_per_task_losses_and_unlabelled_columns_get_zero():
    pred, y = _columns(1)
    a = pred.clone().requires_grad_(True)
    b = pred.clone().requires_grad_(True)
    STACKED_LOSSES["bce"](a, y)[0].sum().backward()
    sum(LOSSES["bce"](b[:, k], y[:, k]) for k in range(6)).backward()  # type: ignore[union-attr]
    assert a.grad is not None and b.grad is not None
    assert torch.allclose(a.grad, b.grad, atol=1e-7, rtol=0)
    assert torch.equal(a.grad[:, 1], torch.zeros(7))  # no label: a zero, not a missing, gradient
    assert bool((a.grad[torch.isnan(y)] == 0).all())  # missing rows never contribute


def test_empty_batch_gives_zero_losses_still_in_the_graph():
    pred = torch.zeros(0, 4, requires_grad=True)
    values, counts = stacked_bce(pred, torch.zeros(0, 4))
    assert values.tolist() == [0.0] * 4 and counts.tolist() == [0] * 4
    values.sum().backward()
    assert pred.grad is not None and pred.grad.shape == (0, 4)


def test_a_missing_label_never_turns_an_infinite_logit_into_nan():
    pred = torch.tensor([[math.inf, 0.0], [1.0, 0.0]])
    values, _ = stacked_mse(pred, torch.tensor([[NAN, 1.0], [2.0, NAN]]))
    assert values.tolist() == [1.0, 1.0]


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        stacked_bce(torch.zeros(3, 2), torch.zeros(3))
