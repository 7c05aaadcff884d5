"""CAGrad's dual solver: the optimality certificate (KKT) of the answer, the simplex QP against
quadprog, the closed-form root on a face, and the degenerate case (0 in the hull)."""

from __future__ import annotations

import numpy as np
import pytest
import quadprog
import torch

import polytask.balancing as pb
from polytask.balancing.aggregator.simplex_qp import Faces, cagrad_dual
from polytask.balancing.base import Statistics


def problem(m: int, seed: int, c: float) -> tuple[np.ndarray, np.ndarray, float]:
    """CAGrad's dual data on a random Gramian normalised by its trace (as :class:`CAGrad`)."""
    rng = np.random.default_rng(seed)
    jac = rng.standard_normal((m, 3 * m)) + 0.3 * rng.standard_normal((1, 3 * m))
    g = jac @ jac.T
    g /= np.trace(g)
    return g + 1e-12 * np.eye(m), g.sum(axis=1) / m, c * np.sqrt(g.sum()) / m


@pytest.mark.parametrize("m", [5, 30, 120])
@pytest.mark.parametrize("c", [0.2, 0.4, 1.0, 5.0])
def test_the_answer_satisfies_the_kkt_conditions(m: int, c: float) -> None:
    g, b, phi = problem(m, m, c)
    w = cagrad_dual(g, b, phi)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-12)
    grad = b + phi * (g @ w) / np.sqrt(w @ g @ w)  # gradient of bᵀw + φ‖g_w‖
    mu = grad[w > 0].mean()
    scale = np.abs(grad).max()
    assert (grad - mu >= -1e-9 * scale).all()  # no descent direction leaves the support
    np.testing.assert_allclose(grad[w > 0], mu, atol=1e-9 * scale, rtol=0)


@pytest.mark.parametrize("s", [1e-4, 1e-2, 1.0])
def test_the_simplex_qp_matches_quadprog(s: float) -> None:
    g, b, phi = problem(25, 1, 0.4)
    w, free = Faces(g, b, phi).qp(s, None)
    cons = np.concatenate([np.ones((25, 1)), np.eye(25)], axis=1)
    ref = quadprog.solve_qp((phi / s) * g, -b, cons, np.concatenate([[1.0], np.zeros(25)]), 1)[0]
    np.testing.assert_allclose(w, ref, atol=1e-10)
    assert free is not None and (w[~free] == 0).all()


def test_the_face_root_is_a_fixed_point_of_the_norm() -> None:
    g, b, phi = problem(12, 2, 0.4)
    faces = Faces(g, b, phi)
    free = np.zeros(12, dtype=bool)
    free[[0, 3, 4, 9]] = True
    s = faces.root(free)
    assert s is not None
    idx, a, c, _, _ = faces.get(free)
    w = a + s * c  # the face's stationary point at s: then ‖g_w‖ = s
    assert float(np.sqrt(w @ g[np.ix_(idx, idx)] @ w)) == pytest.approx(s, rel=1e-12)


def test_zero_in_the_hull() -> None:
    # g_w = (3w_1 - 2, 0), g_0 = (-1/2, 0): the dual's value is -(3w_1 - 2)/2 + c|3w_1 - 2|/2
    stats = Statistics(losses=torch.ones(2), gramian=torch.tensor([[1.0, -2.0], [-2.0, 4.0]]))
    # c = 2: minimal at g_w = 0 (w_1 = 2/3), the Pareto front: no update
    assert (pb.CAGrad(c=2.0).weights(stats) == 0).all()
    # c = 0.4: at the vertex w = (1, 0): w = 1/2 + (c‖g_0‖/‖g_1‖)(1, 0) = (0.7, 0.5)
    torch.testing.assert_close(pb.CAGrad(c=0.4).weights(stats), torch.tensor([0.7, 0.5]))
