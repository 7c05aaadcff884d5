"""RegMean: closed-form least squares on tiny linear layers, α scaling, hooks and fallbacks."""

from __future__ import annotations

import pytest
import torch
from model_merge_fixtures import checkpoints, task_data
from torch import nn

from polytask._core import PolytaskError
from polytask.merging.model import RegMean, regmean_weight

W1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
W2 = torch.tensor([[5.0, 6.0], [7.0, 8.0]])


def _layer() -> tuple[nn.Linear, dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    layer = nn.Linear(2, 2)
    base = {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}
    ft = [
        {"weight": W1, "bias": torch.tensor([1.0, 0.0])},
        {"weight": W2, "bias": torch.tensor([0.0, 3.0])},
    ]
    return layer, base, ft


def test_orthogonal_inputs_take_each_column_from_its_task() -> None:
    layer, base, ft = _layer()
    data = [[torch.tensor([[1.0, 0.0]])], [torch.tensor([[0.0, 1.0]])]]
    out = RegMean(alpha=1.0, gram="sum").merge(base, ft, model=layer, data=data)
    assert out.state["weight"].tolist() == [[1.0, 6.0], [3.0, 8.0]]
    assert out.state["bias"].tolist() == [0.5, 1.5]  # non-linear-weight tensors: plain mean


def test_alpha_one_is_least_squares_on_concatenated_inputs() -> None:
    # X_1 = [[1, 1]], X_2 = [[2, 1]]: A = [[5,3],[3,2]], A⁻¹ = [[2,-3],[-3,5]], B = [[35,51],[19,29]]
    layer, base, ft = _layer()
    data = [[torch.tensor([[1.0, 1.0]])], [torch.tensor([[2.0, 1.0]])]]
    out = RegMean(alpha=1.0, gram="sum").merge(base, ft, model=layer, data=data)
    torch.testing.assert_close(out.state["weight"], torch.tensor([[13.0, -10.0], [15.0, -8.0]]))
    # α = 0: diagonal Grams → per-input-column weighted mean, weights (1, 4) and (1, 1)
    diag = RegMean(alpha=0.0, gram="sum").merge(base, ft, model=layer, data=data)
    torch.testing.assert_close(diag.state["weight"], torch.tensor([[4.2, 4.0], [6.2, 6.0]]))
    # α = ½ blends the off-diagonal entries: A = [[5, 1.5], [1.5, 2]]
    half = RegMean(alpha=0.5, gram="sum").merge(base, ft, model=layer, data=data)
    g1 = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    g2 = torch.tensor([[4.0, 1.0], [1.0, 1.0]])
    expected = torch.linalg.solve(g1 + g2, g1 @ W1.T + g2 @ W2.T).T
    torch.testing.assert_close(half.state["weight"], expected)


def test_random_layer_matches_lstsq() -> None:
    gen = torch.Generator().manual_seed(0)
    layer = nn.Linear(2, 2, dtype=torch.float64)
    base = {k: torch.zeros_like(v) for k, v in layer.state_dict().items()}
    ws = [torch.randn(2, 2, generator=gen, dtype=torch.float64) for _ in range(3)]
    ft = [{"weight": w, "bias": torch.zeros(2, dtype=torch.float64)} for w in ws]
    xs = [torch.randn(4 + t, 2, generator=gen, dtype=torch.float64) for t in range(3)]
    out = RegMean(alpha=1.0, gram="sum").merge(base, ft, model=layer, data=[[x] for x in xs])
    x_all = torch.cat(xs)
    y_all = torch.cat([x @ w.T for x, w in zip(xs, ws)])
    expected = torch.linalg.lstsq(x_all, y_all).solution.T
    torch.testing.assert_close(out.state["weight"], expected, rtol=1e-10, atol=1e-10)


def test_input_direction_no_task_reaches_stays_at_the_average() -> None:
    grams = [torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[4.0, 0.0], [0.0, 0.0]])]
    merged = regmean_weight([W1, W2], grams, alpha=1.0)
    torch.testing.assert_close(merged, torch.tensor([[4.2, 4.0], [6.2, 6.0]], dtype=torch.float64))


def test_rank_deficient_gram_uses_the_pseudo_inverse() -> None:
    # X_1 = [[1, 1]], X_2 = [[2, 2]]: A = [[5, 5], [5, 5]] is singular with a positive diagonal
    grams = [torch.ones(2, 2), torch.full((2, 2), 4.0)]
    merged = regmean_weight([W1, W2], grams, alpha=1.0)
    a = (grams[0] + grams[1]).double()
    avg = ((W1 + W2) / 2).double().T
    b = (grams[0] @ W1.T + grams[1] @ W2.T).double()
    expected = (avg + torch.linalg.pinv(a) @ (b - a @ avg)).T
    torch.testing.assert_close(merged, expected)
    # the merged layer fits both tasks' outputs on their inputs in the least-squares sense
    x = torch.tensor([[1.0, 1.0], [2.0, 2.0]], dtype=torch.float64)
    y = torch.cat([x[:1] @ W1.double().T, x[1:] @ W2.double().T])
    best = torch.linalg.lstsq(x, y).solution.T
    torch.testing.assert_close(x @ merged.T, x @ best.T)


def test_hooks_collect_every_linear_layer_of_an_mlp() -> None:
    model, base, ft = checkpoints(2)
    data = task_data(2)
    method = RegMean(alpha=0.9)
    grams = method.grams(model, ft[0], data[0])
    assert set(grams) == {"hidden.weight", "out.weight"}
    x = torch.cat([b[0] for b in data[0]]).double()
    torch.testing.assert_close(grams["hidden.weight"], x.T @ x / x.shape[0])
    hidden = torch.tanh(x @ ft[0]["hidden.weight"].double().T + ft[0]["hidden.bias"].double())
    torch.testing.assert_close(
        grams["out.weight"], hidden.T @ hidden / x.shape[0], rtol=1e-5, atol=1e-6
    )
    out = method.merge(base, ft, model=model, data=data)
    assert out.metadata["regmean_keys"] == ["hidden.weight", "out.weight"]
    assert torch.equal(out.state["out.bias"], (ft[0]["out.bias"] + ft[1]["out.bias"]) / 2)
    again = method.merge(base, ft, grams=[method.grams(model, ft[t], data[t]) for t in range(2)])
    for k in base:
        assert torch.equal(out.state[k], again.state[k])


def test_regmean_bad_input() -> None:
    model, base, ft = checkpoints(2)
    with pytest.raises(PolytaskError, match="alpha must be in"):
        RegMean(alpha=1.5)
    with pytest.raises(PolytaskError, match="alpha"):
        RegMean(alpha=-0.1)
    with pytest.raises(PolytaskError, match="needs data="):
        RegMean().merge(base, ft, model=model)
    with pytest.raises(PolytaskError, match="data has 1 entries for 2 tasks"):
        RegMean().merge(base, ft, model=model, data=task_data(1))
    with pytest.raises(PolytaskError, match=r"Gram 1 for 'out\.weight' has shape"):
        RegMean().merge(
            base, ft, grams=[{"out.weight": torch.eye(4)}, {"out.weight": torch.eye(3)}]
        )
    with pytest.raises(PolytaskError, match="yielded no batch"):
        RegMean().merge(base, ft, model=model, data=[[], []])


def test_a_layer_the_data_never_reaches_gets_a_zero_gram_and_the_average() -> None:
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(2, 2)
            self.unused = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    model = Skip()
    base = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    ft = [{k: v + i + 1 for k, v in base.items()} for i in range(2)]
    grams = RegMean().grams(model, ft[0], [torch.ones(2, 2)])
    assert torch.equal(grams["unused.weight"], torch.zeros(3, 3, dtype=torch.float64))
    out = RegMean().merge(base, ft, model=model, data=[[torch.ones(2, 2)]] * 2)
    assert torch.equal(out.state["unused.weight"], torch.full((2, 3), 1.5))
