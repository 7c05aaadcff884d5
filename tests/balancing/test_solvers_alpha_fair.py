"""The Newton solver of ``G w = w^{-1/α}`` (Nash-MTL, FairGrad): the residual at round-off, the
warm start, and an error naming the method instead of an unconverged answer."""

from __future__ import annotations

import numpy as np
import pytest

from polytask._core import PolytaskError
from polytask.balancing.aggregator.alpha_fair import alpha_fair_solve, residual


def gramian(m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    jac = rng.standard_normal((m, 2 * m)) + 0.5 * rng.standard_normal((1, 2 * m))
    g = jac @ jac.T
    return g / np.linalg.norm(g) + 1e-8 * np.eye(m)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("m", [2, 10, 80])
def test_the_residual_is_at_round_off(alpha: float, m: int) -> None:
    g = gramian(m, m)
    w = alpha_fair_solve(g, np.ones(m), alpha=alpha)
    assert (w > 0).all()
    assert residual(g, w, alpha) <= 1e-12
    # warm-started at the answer: the same answer
    np.testing.assert_allclose(alpha_fair_solve(g, w, alpha=alpha), w, rtol=1e-12)


def test_an_unconverged_solve_raises_naming_the_method() -> None:
    g = gramian(30, 0)
    with pytest.raises(PolytaskError, match="FairGrad"):
        alpha_fair_solve(g, np.ones(30), alpha=1.0, max_iters=1, name="FairGrad")
