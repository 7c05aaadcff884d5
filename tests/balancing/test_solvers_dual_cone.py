"""The dual-cone projection (UPGrad, DualProj): batched principal subsystems, both subsystem
sides, every row against quadprog, the fallback when the active set has not settled, and the two
methods against torchjd."""

from __future__ import annotations

import numpy as np
import pytest
import quadprog
import torch

import polytask.balancing as pb
from polytask.balancing.aggregator.dual_cone import (
    Inverse,
    kkt_holds,
    normalized_gramian,
    project_rows,
    solve_given_active,
)
from polytask.balancing.aggregator.principal_solve import principal_solve, solve_refined
from polytask.balancing.base import Statistics


def gramian(m: int, seed: int, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    jac = rng.standard_normal((m, n)) + 0.3 * rng.standard_normal((1, n))
    jac[1] = -0.8 * jac[0] + 0.1 * jac[1]
    return jac @ jac.T


def test_principal_solve_is_a_solve_per_row() -> None:
    m = 9
    a = torch.from_numpy(gramian(m, 0)) + 0.1 * torch.eye(m, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    sets = torch.rand(12, m, generator=gen) < 0.5
    sets[0] = False  # empty set: x = 0
    sets[1] = True  # the whole matrix
    rhs = torch.randn(12, m, generator=gen, dtype=torch.float64)
    # a budget of one 3x3 matrix: every row its own chunk
    for budget in (8 * 9, 2**20):
        x, ok = principal_solve(a, sets, rhs, budget_bytes=budget)
        assert ok.all()
        for r in range(12):
            ref = torch.zeros(m, dtype=torch.float64)
            s = sets[r]
            if s.any():
                ref[s] = torch.linalg.solve(a[s][:, s], rhs[r, s])
            torch.testing.assert_close(x[r], ref, rtol=1e-12, atol=1e-12)


def test_principal_solve_flags_a_singular_subsystem() -> None:
    a = torch.diag(torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64))
    sets = torch.tensor([[True, False, True], [True, True, False]])
    x, ok = principal_solve(a, sets, torch.ones(2, 3, dtype=torch.float64))
    assert ok.tolist() == [True, False]
    torch.testing.assert_close(x[0], torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64))
    assert (x[1] == 0).all()


def test_both_subsystem_sides_give_the_same_solution() -> None:
    m = 10
    gn = normalized_gramian(torch.from_numpy(gramian(m, 1)), 1e-4, 1e-4)
    u = torch.eye(m, dtype=torch.float64) / m
    gen = torch.Generator().manual_seed(1)
    active = (torch.rand(m, m, generator=gen) < 0.5) | (u > 0)
    n_active = active.sum(dim=1)
    assert (n_active < m - n_active).any() and (n_active > m - n_active).any()  # both sides
    v_g, lam_g, ok_g = solve_given_active(u, active, gn, None)
    v_h, lam_h, ok_h = solve_given_active(u, active, gn, Inverse(gn))
    assert ok_g.all() and ok_h.all()
    torch.testing.assert_close(v_h, v_g, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(lam_h, lam_g, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize(("m", "seed"), [(6, 0), (15, 1), (30, 2)])
def test_every_row_matches_quadprog(m: int, seed: int) -> None:
    g = gramian(m, seed)
    rng = np.random.default_rng(seed)
    u = np.vstack([np.eye(m) / m, rng.random((4, m)) * (rng.random((4, m)) < 0.5)])
    v = project_rows(u, g, 1e-4, 1e-4)
    gn = normalized_gramian(torch.from_numpy(g), 1e-4, 1e-4).numpy()
    for i in range(u.shape[0]):
        ref = quadprog.solve_qp(gn, np.zeros(m), np.eye(m), u[i])[0]
        np.testing.assert_allclose(v[i], ref, rtol=1e-8, atol=1e-12)


def test_unsettled_rows_fall_back_to_quadprog() -> None:
    m = 20
    g = gramian(m, 3)
    u = np.eye(m) / m
    ut, gn = torch.from_numpy(u), normalized_gramian(torch.from_numpy(g), 1e-4, 1e-4)
    first, _, _ = solve_given_active(ut, (ut @ gn >= 0) | (ut > 0), gn, None)
    assert (~kkt_holds(ut, first, gn)).sum() >= 10  # one round from the sign guess: not settled
    one_round = project_rows(u, g, 1e-4, 1e-4, max_rounds=1)
    assert kkt_holds(ut, torch.from_numpy(one_round), gn).all()
    np.testing.assert_allclose(one_round, project_rows(u, g, 1e-4, 1e-4), rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("k", [3, 12, 40])
def test_upgrad_and_dualproj_match_torchjd(k: int) -> None:
    import torchjd.aggregation as tja

    gram = torch.from_numpy(gramian(k, k, n=50))
    stats = Statistics(losses=torch.ones(k), gramian=gram)
    torch.testing.assert_close(pb.UPGrad().weights(stats), tja.UPGradWeighting()(gram))
    torch.testing.assert_close(pb.DualProj().weights(stats), tja.DualProjWeighting()(gram))


def test_mixed_precision_refines_to_double_and_falls_back_when_it_cannot() -> None:
    m = 40
    a = torch.from_numpy(gramian(m, 4, n=60)) + 1e-3 * torch.eye(m, dtype=torch.float64)
    gen = torch.Generator().manual_seed(4)
    sets = torch.rand(30, m, generator=gen) < 0.6
    rhs = torch.randn(30, m, generator=gen, dtype=torch.float64)
    x64, _ = principal_solve(a, sets, rhs)
    x, ok = principal_solve(a, sets, rhs, mixed=True)
    assert ok.all()
    torch.testing.assert_close(x, x64, rtol=1e-12, atol=1e-14)
    # cond ~1e12: float32 cannot factorise or refine it; the float64 path answers instead
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    bad = q @ torch.diag(torch.logspace(0, -12, 6, dtype=torch.float64)) @ q.T
    idx = torch.arange(6)[None]
    b = torch.ones(1, 6, dtype=torch.float64)
    assert not solve_refined(bad, bad.float(), idx, b)[1].any()
    x, ok = principal_solve(bad, torch.ones(1, 6, dtype=torch.bool), b, mixed=True)
    assert ok.all()
    torch.testing.assert_close(x[0], torch.linalg.solve(bad, b[0]), rtol=1e-3, atol=0)
