"""The sequential-projection engine of PCGrad and GradVac: both schedules against a literal
transcription of torchjd's per-task loop, the shared order against the per-task schedule handed
the same orders, and m = 2 (where the order is irrelevant) against torchjd itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import polytask.balancing as pb
from polytask._core import PolytaskError
from polytask.balancing.aggregator.gradvac import gradvac_rule
from polytask.balancing.aggregator.pcgrad import pcgrad_rule
from polytask.balancing.aggregator.sequential_projection import (
    project_per_task,
    project_shared,
    shared_orders,
)
from polytask.balancing.base import Statistics


def gramian(m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    jac = rng.standard_normal((m, 9)) + 0.3 * rng.standard_normal((1, 9))
    jac[1] = -0.8 * jac[0] + 0.1 * jac[1]
    return jac @ jac.T


def loop_reference(
    g: np.ndarray, orders: np.ndarray, hat: np.ndarray | None, beta: float = 0.5, eps: float = 1e-8
) -> np.ndarray:
    """torchjd 0.18's GradVacWeighting / PCGradWeighting loop, one task and one j at a time,
    with the orders given (``hat is None``: PCGrad)."""
    m = g.shape[0]
    c = np.eye(m)
    for i in range(m):
        cg = c[i] @ g
        for j in orders[i]:
            dot = cg[j]
            if hat is None:
                w = -dot / g[j, j] if dot < 0 and g[j, j] > 0 else 0.0
            else:
                norm_i, norm_j = np.sqrt(max(cg @ c[i], 0.0)), np.sqrt(g[j, j])
                phi = dot / (norm_i * norm_j + eps)
                h = hat[i, j]
                s_phi, s_hat = np.sqrt(max(1 - phi * phi, 0.0)), np.sqrt(max(1 - h * h, 0.0))
                w = norm_i * (h * s_phi - phi * s_hat) / (norm_j * s_hat + eps) if phi < h else 0.0
                hat[i, j] = (1 - beta) * h + beta * phi
            c[i, j] += w
            cg = cg + w * g[j]
    return c.sum(axis=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_per_task_schedule_is_the_loop(seed: int) -> None:
    m = 6
    g = gramian(m, seed)
    rng = np.random.default_rng(10 + seed)
    orders = np.stack([rng.permutation([k for k in range(m) if k != i]) for i in range(m)])
    ref = loop_reference(g, orders, None)
    np.testing.assert_allclose(project_per_task(g, orders, pcgrad_rule(np.diag(g))), ref, 1e-12)
    hat_ref, hat = np.full((m, m), 0.1), np.full((m, m), 0.1)
    for _ in range(3):  # targets carried over steps
        ref = loop_reference(g, orders, hat_ref)
        got = project_per_task(g, orders, gradvac_rule(np.sqrt(np.diag(g)), hat.T, 0.5, 1e-8))
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hat, hat_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("block", [1, 2, 3, 64])
def test_shared_schedule_is_the_per_task_one_with_the_same_orders(block: int) -> None:
    m = 7
    g = gramian(m, 3)
    perm = np.array([4, 0, 6, 2, 5, 1, 3])
    orders = shared_orders(perm)
    assert orders[4].tolist() == [0, 6, 2, 5, 1, 3]
    diag = np.diag(g)
    got = project_shared(g, perm, pcgrad_rule(diag), block=block)
    np.testing.assert_allclose(got, project_per_task(g, orders, pcgrad_rule(diag)), 1e-12)
    hat_a, hat_b = np.zeros((m, m)), np.zeros((m, m))
    norm_g = np.sqrt(diag)
    for _ in range(3):
        a = project_shared(g, perm, gradvac_rule(norm_g, hat_a.T, 0.5, 1e-8), block=block)
        b = project_per_task(g, orders, gradvac_rule(norm_g, hat_b.T, 0.5, 1e-8))
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hat_a, hat_b, rtol=1e-10, atol=1e-12)
    assert (np.diag(hat_a) == 0).all()  # a task never moves its own target


def test_shared_order_matches_torchjd_on_two_tasks() -> None:
    import torchjd.aggregation as tja

    jac = torch.tensor([[2.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    stats = Statistics(losses=torch.ones(2), gramian=jac @ jac.T)
    torch.testing.assert_close(
        pb.PCGrad(order="shared").weights(stats), tja.PCGradWeighting()(stats.gramian)
    )
    ours, theirs = pb.GradVac(order="shared"), tja.GradVacWeighting()
    for scale in (1.0, 0.5, 2.0):
        s = Statistics(losses=torch.ones(2), gramian=scale * stats.gramian)
        torch.testing.assert_close(ours.weights(s), theirs(s.gramian))


def test_order_is_checked() -> None:
    with pytest.raises(PolytaskError, match="PCGrad"):
        pb.PCGrad(order="random")  # type: ignore[arg-type]
    with pytest.raises(PolytaskError, match="GradVac"):
        pb.GradVac(order="random")  # type: ignore[arg-type]
