"""AdaMerging: entropy, gradient of λ against a hand derivation, Adam's first step, training."""

from __future__ import annotations

import math

import pytest
import torch
from model_merge_fixtures import checkpoints, task_data
from torch import nn

from polytask._core import PolytaskError
from polytask.merging.model import AdaMerging, bernoulli_entropy, merged_state, prediction_entropy
from polytask.merging.model._checkpoints import task_vectors


def test_prediction_entropy_pinned() -> None:
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 3.0]])
    torch.testing.assert_close(prediction_entropy(logits), torch.full((3,), math.log(2.0)))
    p = torch.tensor([0.7, 0.2, 0.1])
    expected = -(p * p.log()).sum()
    torch.testing.assert_close(prediction_entropy(p.log()[None])[0], expected)


def test_bernoulli_entropy_pinned() -> None:
    # z = 0 → p = ½ → ln 2; z = ln 3 → p = ¾ → −¾ ln ¾ − ¼ ln ¼; symmetric in z
    z = torch.tensor([0.0, math.log(3.0), -math.log(3.0), 40.0], dtype=torch.float64)
    h34 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = torch.tensor([math.log(2.0), h34, h34, 0.0], dtype=torch.float64)
    torch.testing.assert_close(bernoulli_entropy(z), expected, atol=1e-12, rtol=0)


def test_bernoulli_likelihood_with_batch_norm_buffers() -> None:
    # binary heads: entropy of σ(z), not a softmax over the batch; running statistics are merged
    # with λ but carry no gradient (batch norm refuses differentiable statistics)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1), nn.Flatten(0))
    net.train()
    net(torch.randn(16, 2))  # running statistics away from (0, 1)
    base = {k: v.detach().clone() for k, v in net.state_dict().items()}
    ft = []
    for shift in (0.5, -0.25):
        state = {k: v.clone() for k, v in base.items()}
        state["0.weight"] += shift
        state["1.running_var"] *= 1 + shift
        ft.append(state)
    x = torch.randn(8, 2)
    out = AdaMerging(steps=2, lr=0.05, likelihood="bernoulli").merge(
        base, ft, model=net, data=[[x], [x]]
    )
    lam = out.metadata["coefficients"]
    assert out.metadata["likelihood"] == "bernoulli" and lam != [0.3, 0.3]
    expected_var = base["1.running_var"] * (1 + 0.5 * lam[0] - 0.25 * lam[1])
    torch.testing.assert_close(out.state["1.running_var"], expected_var)
    assert out.metadata["entropy_after"] < out.metadata["entropy_before"] <= 2 * math.log(2.0)


def _linear_problem() -> tuple[nn.Module, dict, list[dict], torch.Tensor]:
    layer = nn.Linear(2, 3, bias=False, dtype=torch.float64)
    base = {"weight": torch.tensor([[0.2, -0.1], [0.0, 0.3], [-0.4, 0.1]], dtype=torch.float64)}
    ft = [
        {
            "weight": base["weight"]
            + torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.5, 0.5]], dtype=torch.float64)
        },
        {
            "weight": base["weight"]
            + torch.tensor([[-0.5, 1.0], [1.0, 0.0], [0.0, 0.2]], dtype=torch.float64)
        },
    ]
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float64)
    return layer, base, ft, x


def _hand_gradient(base: dict, ft: list[dict], x: torch.Tensor, lam: list[float]) -> list[float]:
    # z = x Wᵀ, W = W_0 + Σ λ_t τ_t; ∂H/∂z_j = −p_j (log p_j + H); ∂z/∂λ_t = x τ_tᵀ
    taus = [f["weight"] - base["weight"] for f in ft]
    w = base["weight"] + sum(lt * tt for lt, tt in zip(lam, taus))
    z = x @ w.T
    logp = torch.log_softmax(z, -1)
    h = -(logp.exp() * logp).sum(-1, keepdim=True)
    dz = -logp.exp() * (logp + h)
    return [float((dz * (x @ tau.T)).sum() / x.shape[0]) for tau in taus]


def test_gradient_of_lambda_matches_hand_derivation() -> None:
    layer, base, ft, x = _linear_problem()
    vectors = task_vectors(base, ft)
    lam = torch.tensor([0.3, 0.6], dtype=torch.float64, requires_grad=True)
    logits = torch.func.functional_call(layer, merged_state(base, vectors, lam), (x,))
    prediction_entropy(logits).mean().backward()
    assert lam.grad is not None
    torch.testing.assert_close(
        lam.grad, torch.tensor(_hand_gradient(base, ft, x, [0.3, 0.6]), dtype=torch.float64)
    )


def test_first_adam_step_moves_each_lambda_by_lr_against_the_gradient() -> None:
    layer, base, ft, x = _linear_problem()
    # both tasks see the same batch: L = 2·mean H, so ∂L/∂λ = 2·hand gradient
    out = AdaMerging(steps=1, lr=0.01).merge(base, ft, model=layer, data=[[x], [x]])
    grads = _hand_gradient(base, ft, x, [0.3, 0.3])
    expected = [0.3 - 0.01 * math.copysign(1.0, g) for g in grads]
    assert out.metadata["coefficients"] == pytest.approx(expected, abs=1e-9)
    merged = base["weight"] + sum(c * (f["weight"] - base["weight"]) for c, f in zip(expected, ft))
    torch.testing.assert_close(out.state["weight"], merged)


@pytest.mark.parametrize("granularity", ["task", "layer"])
def test_entropy_decreases(granularity: str) -> None:
    model, base, ft = checkpoints(2)
    data = [[b[0] for b in task] for task in task_data(2)]
    out = AdaMerging(granularity=granularity, steps=40, lr=0.05).merge(
        base, ft, model=model, data=data
    )
    meta = out.metadata
    assert meta["entropy_after"] < meta["entropy_before"] - 1e-3
    assert len(meta["entropy_trace"]) == 40
    if granularity == "layer":
        assert set(meta["coefficients"]) == {
            "hidden.weight",
            "hidden.bias",
            "out.weight",
            "out.bias",
        }
        values = [v for pair in meta["coefficients"].values() for v in pair]
    else:
        values = meta["coefficients"]
        assert len(values) == 2
    assert all(0.0 <= v <= 1.0 for v in values)
    assert out.state["version"].item() == 7


def test_zero_steps_is_task_arithmetic_at_init() -> None:
    model, base, ft = checkpoints(3)
    out = AdaMerging(steps=0, init=0.3).merge(base, ft, model=model, data=[[torch.ones(1, 3)]] * 3)
    for k in ("hidden.weight", "out.bias"):
        expected = base[k] + 0.3 * sum(f[k] - base[k] for f in ft)
        torch.testing.assert_close(out.state[k], expected)


def test_select_picks_each_tasks_logits() -> None:
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(1, 2, bias=False)
            self.b = nn.Linear(1, 2, bias=False)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"a": self.a(x), "b": self.b(x)}

    model = TwoHeads()
    base = {"a.weight": torch.zeros(2, 1), "b.weight": torch.tensor([[5.0], [0.0]])}
    ft = [dict(base), dict(base)]
    out = AdaMerging(steps=0).merge(
        base, ft, model=model, data=[[torch.ones(1, 1)]] * 2, select=lambda o, t: o["ab"[t]]
    )
    h_b = float(prediction_entropy(torch.tensor([[5.0, 0.0]]))[0])
    assert out.metadata["entropy_before"] == pytest.approx(math.log(2.0) + h_b)


def test_adamerging_bad_input() -> None:
    model, base, ft = checkpoints(2)
    with pytest.raises(PolytaskError, match="granularity"):
        AdaMerging(granularity="block")
    with pytest.raises(PolytaskError, match="steps"):
        AdaMerging(steps=-1)
    with pytest.raises(PolytaskError, match="lr"):
        AdaMerging(lr=float("inf"))
    with pytest.raises(PolytaskError, match="clamp high"):
        AdaMerging(clamp=(1.0, 0.0))
    with pytest.raises(PolytaskError, match="needs data="):
        AdaMerging().merge(base, ft, model=model)
    with pytest.raises(PolytaskError, match="yielded no batch"):
        AdaMerging(steps=2).merge(base, ft, model=model, data=[[torch.ones(1, 3)], []])
