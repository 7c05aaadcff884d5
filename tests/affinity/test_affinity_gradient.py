"""Gradient cosine from the Gramian, and the GradientAffinity callback."""

from __future__ import annotations

import math

import pytest
import torch

from polytask._core import PolytaskError
from polytask.affinity import GradientAffinity, StepInfo, gradient_cosine
from polytask.train.trainer import StepInfo as TrainerStepInfo

NAN = float("nan")


def _info(
    step: int, epoch: int, names: tuple[str, ...], gramian: torch.Tensor | None
) -> TrainerStepInfo:
    m = len(names)
    return TrainerStepInfo(step, epoch, names, torch.ones(m), None, gramian)


def test_pinned_values() -> None:
    g = torch.tensor([[4.0, 2.0, 0.0], [2.0, 9.0, -3.0], [0.0, -3.0, 1.0]])
    c = gradient_cosine(g)
    # 2 / sqrt(4 * 9) = 1/3 ;  -3 / sqrt(9 * 1) = -1 ; 0 / ... = 0
    expected = torch.tensor(
        [[1.0, 1 / 3, 0.0], [1 / 3, 1.0, -1.0], [0.0, -1.0, 1.0]], dtype=torch.float64
    )
    assert torch.allclose(c, expected)


def test_equals_cosine_of_gradients_symmetric_unit_diagonal() -> None:
    gen = torch.Generator().manual_seed(0)
    jac = torch.randn(5, 40, generator=gen, dtype=torch.float64)
    c = gradient_cosine(jac @ jac.T)
    direct = torch.nn.functional.cosine_similarity(jac[:, None, :], jac[None, :, :], dim=-1)
    assert torch.allclose(c, direct, atol=1e-12)
    assert torch.equal(c, c.T)
    assert torch.equal(torch.diagonal(c), torch.ones(5, dtype=torch.float64))


def test_invariant_to_per_task_loss_scaling() -> None:
    gen = torch.Generator().manual_seed(1)
    jac = torch.randn(4, 10, generator=gen, dtype=torch.float64)
    scale = torch.tensor([0.01, 1.0, 7.0, 300.0], dtype=torch.float64)  # L_k -> s_k L_k
    scaled = scale[:, None] * jac
    assert torch.allclose(
        gradient_cosine(jac @ jac.T), gradient_cosine(scaled @ scaled.T), atol=1e-12
    )


def test_zero_gradient_gives_nan_row() -> None:
    c = gradient_cosine(torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0], [0.5, 0.0, 1.0]]))
    assert math.isnan(c[1, 0]) and math.isnan(c[0, 1]) and math.isnan(c[1, 1])
    assert c[0, 2] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "gramian",
    [
        torch.tensor([[1.0, 0.5], [0.2, 1.0]]),  # not symmetric
        torch.tensor([[1.0, NAN], [NAN, 1.0]]),  # NaN
        torch.tensor([[-1.0, 0.0], [0.0, 1.0]]),  # negative diagonal
        torch.tensor([[1.0]]),  # one task
        torch.ones(2, 3),  # not square
    ],
)
def test_bad_gramian(gramian: torch.Tensor) -> None:
    with pytest.raises(PolytaskError):
        gradient_cosine(gramian)


def test_trainer_step_info_satisfies_protocol() -> None:
    assert isinstance(_info(1, 0, ("a", "b"), None), StepInfo)


def test_ema_mean_and_per_epoch_values() -> None:
    names = ("a", "b")
    # cosines 0.5 then -0.5 then 1.0 (Gramians with unit diagonals)
    gs = [torch.tensor([[1.0, v], [v, 1.0]]) for v in (0.5, -0.5, 1.0)]
    cb = GradientAffinity(rate=0.25)
    cb.on_step(_info(1, 0, names, gs[0]))
    cb.on_step(_info(2, 0, names, None))  # no Gramian this step
    cb.on_step(_info(3, 0, names, gs[1]))
    cb.on_epoch_end(0)
    cb.on_step(_info(4, 1, names, gs[2]))
    # EMA: 0.5 -> 0.75*0.5 + 0.25*(-0.5) = 0.25 -> 0.75*0.25 + 0.25*1.0 = 0.4375
    assert cb.matrix()[0, 1].item() == pytest.approx(0.4375)
    assert cb.mean()[0, 1].item() == pytest.approx(1.0 / 3.0)
    epochs = cb.per_epoch()
    assert epochs[0][0, 1].item() == pytest.approx(0.0)
    assert epochs[1][0, 1].item() == pytest.approx(1.0)
    assert (cb.steps, cb.skipped_steps) == (3, 1)


def test_steps_with_task_subsets() -> None:
    cb = GradientAffinity(rate=1.0)
    cb.on_step(_info(1, 0, ("a", "b"), torch.tensor([[1.0, 0.5], [0.5, 1.0]])))
    cb.on_step(_info(2, 0, ("c", "a"), torch.tensor([[4.0, -2.0], [-2.0, 1.0]])))  # cos(c, a) = -1
    cb.on_step(_info(3, 0, ("a",), None))
    assert cb.task_names == ("a", "b", "c")
    m = cb.matrix()
    assert m[0, 1].item() == pytest.approx(0.5)
    assert m[0, 2].item() == pytest.approx(-1.0) and m[2, 0].item() == pytest.approx(-1.0)
    assert math.isnan(m[1, 2].item())  # b and c never in one step
    assert cb.per_epoch()[0].shape == (3, 3)


def test_fixed_task_set_rejects_unknown_task() -> None:
    cb = GradientAffinity(task_names=["a", "b"])
    with pytest.raises(PolytaskError, match="'z'"):
        cb.on_step(_info(1, 0, ("a", "z"), torch.eye(2)))


def test_state_dict_round_trip() -> None:
    gen = torch.Generator().manual_seed(2)
    cb = GradientAffinity(rate=0.3)
    for step in range(6):
        jac = torch.randn(3, 5, generator=gen)
        cb.on_step(_info(step, step // 3, ("x", "y", "z"), jac @ jac.T))
    other = GradientAffinity()
    other.load_state_dict(cb.state_dict())
    assert torch.equal(other.matrix(), cb.matrix())
    assert torch.equal(other.mean(), cb.mean())
    assert all(torch.equal(other.per_epoch()[e], v) for e, v in cb.per_epoch().items())
    jac = torch.randn(3, 5, generator=gen)
    cb.on_step(_info(9, 2, ("x", "y", "z"), jac @ jac.T))
    other.on_step(_info(9, 2, ("x", "y", "z"), jac @ jac.T))
    assert torch.equal(other.matrix(), cb.matrix())


def test_bad_rate_and_no_data() -> None:
    with pytest.raises(PolytaskError):
        GradientAffinity(rate=0.0)
    with pytest.raises(PolytaskError, match="no Gramian"):
        GradientAffinity().matrix()
    with pytest.raises(PolytaskError, match="at least 2 tasks"):
        GradientAffinity(task_names=["only"])
