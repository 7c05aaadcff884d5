"""Declared head columns (``columns=``): the same statistic as per-task backward passes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import polytask.balancing as pb
from polytask._core import PolytaskError
from polytask.balancing.columns import owner_matrix
from polytask.balancing.statistic import layer_grad_norms, task_gradients

# task 0 reads columns 0-1 (2-class cross-entropy), task 1 column 2, task 2 column 3, task 3
# column 5; column 4 is read by no task.
COLUMNS = [slice(0, 2), 2, [3], range(5, 6)]


class StackedHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 10), nn.Tanh())
        self.head = nn.Linear(10, 6)

    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        z = self.trunk(x)
        out = self.head(z)
        ce = nn.functional.cross_entropy(out[:, :2], (y[:, 0] > 0).long())
        return torch.stack(
            [
                ce,
                ((out[:, 2] - y[:, 1]) ** 2).mean(),
                (out[:, 3] - y[:, 2]).abs().mean(),
                ((out[:, 5] - y[:, 3]) ** 2).mean() * 3.0,
            ]
        ), z


def setup(seed: int = 0) -> tuple[StackedHead, Tensor, Tensor]:
    torch.manual_seed(seed)
    model = StackedHead().double()
    return model, torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 4, dtype=torch.float64)


def feature_grads(losses: Tensor, z: Tensor) -> Tensor:
    return torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses])


def test_declared_statistic_equals_per_task_gradients() -> None:
    model, x, y = setup()
    losses, z = model.losses(x, y)
    dz = feature_grads(losses, z).flatten(1)
    tg = task_gradients(losses, list(model.trunk.parameters()), z, True, COLUMNS)
    assert tg.owners is not None and tg.r is None  # no per-task R was formed
    torch.testing.assert_close(tg.gramian(), dz @ dz.T)
    torch.testing.assert_close(tg.rows(), dz)
    w = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)
    torch.testing.assert_close(tg.combine(w)[0].flatten(), w @ dz)
    head = torch.autograd.grad(losses.sum(), list(model.head.parameters()), retain_graph=True)
    for got, ref in zip(tg.head_grads, head):
        torch.testing.assert_close(got, ref)
    norms = layer_grad_norms(losses, [], z, True, COLUMNS)
    torch.testing.assert_close(norms, dz.norm(dim=1))


@pytest.mark.parametrize("method", [pb.UPGrad, pb.GradNorm, pb.GradDrop, pb.MGDA])
def test_balancer_fills_the_same_grads_with_and_without_columns(method) -> None:
    filled = []
    for columns in (None, COLUMNS):
        model, x, y = setup()
        bal = pb.Balancer(method(), mode="features")
        torch.manual_seed(1)  # GradDrop draws
        for _ in range(2):  # GradNorm's second step uses the first step's norms
            model.zero_grad()
            losses, z = model.losses(x, y)
            res = bal.backward(losses, model.trunk.parameters(), features=z, columns=columns)
        filled.append(({n: p.grad.clone() for n, p in model.named_parameters()}, res.weights))
    (g0, w0), (g1, w1) = filled
    torch.testing.assert_close(w1, w0)
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], msg=name)


def test_columns_are_ignored_when_the_head_is_not_one_linear_map() -> None:
    # two consumers of Z: the declaration cannot describe them, the measured path is used
    model, x, _ = setup()
    z = model.trunk(x)
    extra = nn.Linear(10, 1).double()
    losses = torch.stack([model.head(z)[:, 0].pow(2).mean(), extra(z).pow(2).mean()])
    dz = feature_grads(losses, z).flatten(1)
    tg = task_gradients(losses, [], z, True, [0, 1])
    torch.testing.assert_close(tg.gramian(), dz @ dz.T)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([0, 1, 2], "3 entries for 4 task losses"),
        ([0, 1, 2, 6], r"columns\[3\] holds column 6, outside the head output's 6 columns"),
        ([slice(0, 2), 1, 3, 5], r"columns\[0\] and columns\[1\] both hold column 1"),
        ([0, 1, 2, "a"], r"columns\[3\] must be column indices"),
        ([0, 1, 2, [1.5]], r"columns\[3\] holds 1.5, not a column index"),
        ("abcd", "one entry of column indices per task"),
    ],
)
def test_bad_columns_are_one_line_errors(columns, message: str) -> None:
    with pytest.raises(PolytaskError, match=message) as err:
        owner_matrix(columns, 4, 6, torch.float64, torch.device("cpu"))
    assert "\n" not in str(err.value)


def test_owner_matrix_values() -> None:
    p = owner_matrix(COLUMNS, 4, 6, torch.float64, torch.device("cpu"))
    expected = torch.zeros(4, 6, dtype=torch.float64)
    expected[0, :2] = expected[1, 2] = expected[2, 3] = expected[3, 5] = 1
    torch.testing.assert_close(p, expected)
    assert owner_matrix([-1, 0], 2, 3, torch.float64, torch.device("cpu"))[0, 2] == 1


def test_one_column_per_task_rows_are_outer_products() -> None:
    # scalar heads: task k's feature gradient is R_Σ[:, k] ⊗ A_k, formed without a [m, B, H] tensor
    from polytask.balancing.task_gradients import Owners, TaskGradients

    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    a = torch.randn(4, 3, generator=g, dtype=torch.float64)
    tg = TaskGradients(
        [], [], [], True, a=a, owners=Owners(torch.arange(4), torch.arange(4), 4), r_sum=x
    )
    ref = torch.stack([(x[:, k : k + 1] @ a[k : k + 1]).flatten() for k in range(4)])
    torch.testing.assert_close(tg.rows(), ref)
    torch.testing.assert_close(tg.gramian(), ref @ ref.T)
    torch.testing.assert_close(tg.norms(), ref.norm(dim=1))
