"""TAG lookahead affinity: pinned values, invariance, the accumulator and its cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.affinity import LookaheadAffinity, lookahead_affinity


class Scalar(nn.Module):
    """Shared scalar ``w``; task heads ``h`` (not shared) scale each task's loss."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.0))
        self.h = nn.Parameter(torch.tensor([1.0, 1.0]))

    def forward(self, targets: Tensor) -> Tensor:
        return self.h * (self.w - targets) ** 2


def losses(forward: Any, batch: Tensor) -> Tensor:
    return forward(batch)


def test_pinned_values() -> None:
    # L_1 = (w - 1)^2, L_2 = (w - 2)^2 at w = 0, lr = 0.1:
    # step on 1: w = 0.2 ; step on 2: w = 0.4
    # Z(1->1) = 1 - 0.64/1 = 0.36   Z(1->2) = 1 - 3.24/4 = 0.19
    # Z(2->1) = 1 - 0.36/1 = 0.64   Z(2->2) = 1 - 2.56/4 = 0.36
    model = Scalar()
    z = lookahead_affinity(model, ["w"], losses, torch.tensor([1.0, 2.0]), lr=0.1)
    expected = torch.tensor([[0.36, 0.19], [0.64, 0.36]], dtype=torch.float64)
    assert torch.allclose(z, expected, atol=1e-6)
    # parameters and gradients untouched
    assert model.w.item() == 0.0 and model.w.grad is None and model.h.grad is None


def test_heads_stay_fixed() -> None:
    model = Scalar()
    with torch.no_grad():
        model.h.copy_(torch.tensor([2.0, 0.5]))
    # L_1 = 2 (w-1)^2: grad -4 -> w = 0.4 ; L_2 = 0.5 (w-2)^2: grad -2 -> w = 0.2
    # Z(1->2) = 1 - (1.6^2)/4 = 0.36 ; Z(2->1) = 1 - (0.8^2)/1 = 0.36
    z = lookahead_affinity(model, {"w": model.w}, losses, torch.tensor([1.0, 2.0]), lr=0.1)
    assert z[0, 1].item() == pytest.approx(0.36)
    assert z[1, 0].item() == pytest.approx(0.36)


def _mlp_setup() -> tuple[nn.Module, list[str], tuple[Tensor, Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(32, 5)
    y = torch.randn(32, 3)
    return model, ["0.weight", "0.bias"], (x, y)


def mse(forward: Any, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return ((forward(x) - y) ** 2).mean(0)


def test_column_invariant_to_scaling_target_loss() -> None:
    model, shared, batch = _mlp_setup()
    base = lookahead_affinity(model, shared, mse, batch, lr=0.05)
    scale = torch.tensor([1.0, 1.0, 25.0])

    def scaled(forward: Any, b: tuple[Tensor, Tensor]) -> Tensor:
        return mse(forward, b) * scale

    z = lookahead_affinity(model, shared, scaled, batch, lr=0.05)
    # column 2 (effect of tasks 0 and 1 on task 2): the ratio cancels the scale
    assert torch.allclose(z[:2, 2], base[:2, 2], atol=1e-6)
    # columns 0 and 1 from sources 0 and 1 are untouched; row 2 (a 25x larger step) is not
    assert torch.allclose(z[:2, :2], base[:2, :2], atol=1e-6)
    assert not torch.allclose(z[2], base[2], atol=1e-3)


def test_matches_a_hand_written_sgd_step() -> None:
    model, shared, batch = _mlp_setup()
    z = lookahead_affinity(model, shared, mse, batch, lr=0.05)
    before = mse(model, batch).detach()
    for i in range(3):
        clone = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
        clone.load_state_dict(model.state_dict())
        mse(clone, batch)[i].backward()
        with torch.no_grad():
            for name, p in clone.named_parameters():
                if name in shared:
                    p -= 0.05 * p.grad
        after = mse(clone, batch).detach()
        assert torch.allclose(z[i].float(), 1 - after / before, atol=1e-5)


@dataclass
class Info:
    step: int
    epoch: int
    task_names: tuple[str, ...]
    batch: Any = None


def test_accumulator_every_mean_and_cost() -> None:
    model, shared, batch = _mlp_setup()
    acc = LookaheadAffinity(model, shared, mse, lr=0.05, every=2)
    single = lookahead_affinity(model, shared, mse, batch, lr=0.05)
    for step in range(5):  # measures at 0, 2, 4
        acc.on_step(Info(step, step // 3, ("a", "b", "c"), batch))
    acc.on_step(Info(6, 2, ("a", "b", "c"), None))  # no batch: counted, not measured
    assert acc.cost.measurements == 3
    assert (acc.cost.forwards, acc.cost.backwards) == (3 * 4, 3 * 3)
    assert acc.missing_batch_steps == 1
    assert torch.allclose(acc.matrix(), single)  # same model and batch each time
    assert sorted(acc.per_epoch()) == [0, 1]
    other = LookaheadAffinity(model, shared, mse, lr=0.05)
    other.load_state_dict(acc.state_dict())
    assert torch.equal(other.matrix(), acc.matrix())
    assert other.cost == acc.cost


def test_bad_input() -> None:
    model, shared, batch = _mlp_setup()
    with pytest.raises(PolytaskError, match="lr"):
        lookahead_affinity(model, shared, mse, batch, lr=0.0)
    with pytest.raises(PolytaskError, match="'nope'"):
        lookahead_affinity(model, ["nope"], mse, batch, lr=0.1)
    with pytest.raises(PolytaskError, match="at least 2 tasks"):
        lookahead_affinity(model, shared, lambda f, b: mse(f, b)[:1], batch, lr=0.1)
    with pytest.raises(PolytaskError, match="1-D"):
        lookahead_affinity(model, shared, lambda f, b: mse(f, b).sum(), batch, lr=0.1)
    with pytest.raises(PolytaskError, match="nothing measured"):
        LookaheadAffinity(model, shared, mse, lr=0.1).matrix()


def test_zero_loss_column_is_nan_and_skipped_in_the_mean() -> None:
    model = Scalar()
    z = lookahead_affinity(model, ["w"], losses, torch.tensor([1.0, 0.0]), lr=0.1)  # L_2(0) = 0
    assert torch.isnan(z[:, 1]).all()
    # L_1 = (w-1)^2: step on 1 -> w = 0.2, Z(1->1) = 0.36 ; L_2 = w^2 has zero gradient at 0
    assert z[0, 0].item() == pytest.approx(0.36) and z[1, 0].item() == pytest.approx(0.0)
    acc = LookaheadAffinity(model, ["w"], losses, lr=0.1, every=1)
    acc.update(torch.tensor([1.0, 0.0]))
    acc.update(torch.tensor([1.0, 2.0]))
    # column 2 defined once (second batch: Z(1->2) = 0.19), column 1 twice (0.36 then 0.36)
    assert acc.matrix()[0, 1].item() == pytest.approx(0.19)
    assert acc.matrix()[0, 0].item() == pytest.approx(0.36)


def test_runs_in_eval_mode_under_no_grad_and_restores_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.Linear(8, 3))
    model.train()
    stats = model[2].running_mean.clone()
    batch = (torch.randn(16, 5), torch.randn(16, 3))
    with torch.no_grad():
        z1 = lookahead_affinity(model, ["0.weight"], mse, batch, lr=0.05)
    z2 = lookahead_affinity(model, ["0.weight"], mse, batch, lr=0.05)
    assert torch.equal(z1, z2)  # no dropout noise
    assert model.training
    assert torch.equal(model[2].running_mean, stats)  # BatchNorm statistics untouched
