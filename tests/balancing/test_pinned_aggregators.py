"""Pinned values of each gradient aggregator on J = [[2, 0], [-1, 1]], derived by hand from the
papers' formulas (G = [[4, -2], [-2, 2]]); cross-checked with torchjd where it has the method."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import polytask.balancing as pb
from polytask.balancing.base import Statistics
from tests.conftest import needs

J = torch.tensor([[2.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
G = J @ J.T


def weights(method: pb.BalancingMethod, gram: Tensor = G) -> Tensor:
    return method.weights(Statistics(losses=torch.ones(gram.shape[0]), gramian=gram))


def test_mgda() -> None:
    # min over γ of ‖γ g1 + (1-γ) g2‖²: γ = g2·(g2-g1)/‖g1-g2‖² = 4/10; then g1·d = g2·d = 0.4
    torch.testing.assert_close(weights(pb.MGDA()), torch.tensor([0.4, 0.6], dtype=torch.float64))


def test_pcgrad() -> None:
    # g1 - (g1·g2/‖g2‖²) g2 = (1, 1); g2 - (g1·g2/‖g1‖²) g1 = (0, 1); sum (1, 2) = 1.5 g1 + 2 g2
    torch.testing.assert_close(weights(pb.PCGrad()), torch.tensor([1.5, 2.0], dtype=torch.float64))


def test_pcgrad_matches_torchjd_on_two_tasks() -> None:
    import torchjd.aggregation as tja

    torch.testing.assert_close(weights(pb.PCGrad()), tja.PCGradWeighting()(G))


def test_gradvac_two_calls_by_hand() -> None:
    method = pb.GradVac(beta=0.5, eps=0.0)
    # call 1, φ̂ = 0: φ = cos = -1/√2 < 0 → w12 = ‖g1‖·(1/√2)/‖g2‖ = 1, w21 = ‖g2‖(1/√2)/‖g1‖ = 0.5
    torch.testing.assert_close(weights(method), torch.tensor([1.5, 2.0], dtype=torch.float64))
    # call 2, φ̂ = -1/(2√2): w = ‖g_i‖(φ̂√(1-φ²) - φ√(1-φ̂²)) / (‖g_j‖√(1-φ̂²))
    phi, hat = -1 / math.sqrt(2), -1 / (2 * math.sqrt(2))
    num = hat * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - hat**2)
    w12 = 2.0 * num / (math.sqrt(2) * math.sqrt(1 - hat**2))
    w21 = math.sqrt(2) * num / (2.0 * math.sqrt(1 - hat**2))
    expected = torch.tensor([1 + w21, 1 + w12], dtype=torch.float64)
    torch.testing.assert_close(weights(method), expected)
    assert expected.tolist() == pytest.approx([1.31102, 1.62204], abs=1e-5)


def test_gradvac_matches_torchjd_over_steps() -> None:
    import torchjd.aggregation as tja

    ours, theirs = pb.GradVac(), tja.GradVacWeighting()
    for scale in (1.0, 0.5, 2.0):
        torch.testing.assert_close(weights(ours, scale * G), theirs(scale * G))


def test_imtl_g() -> None:
    # v = G⁻¹ √diag(G) = [[.5,.5],[.5,1]] (2, √2); equal projections d·g_k/‖g_k‖
    v = torch.tensor([1 + math.sqrt(2) / 2, 1 + math.sqrt(2)], dtype=torch.float64)
    w = weights(pb.IMTLG())
    torch.testing.assert_close(w, v / v.sum())
    d = w @ J
    assert float(d @ J[0]) / 2 == pytest.approx(float(d @ J[1]) / math.sqrt(2))


def test_config_by_hand_and_torchjd() -> None:
    import torchjd.aggregation as tja

    # u = normalize(U⁻¹ 1) = normalize(1, 1+√2); update = (Σ_k g_k·u) u = (0.5, 1.20711)
    x = torch.tensor([1.0, 1 + math.sqrt(2)], dtype=torch.float64)
    u = x / x.norm()
    expected = (J @ u).sum() * u
    got = weights(pb.ConFIG()) @ J
    torch.testing.assert_close(got, expected)
    assert got.tolist() == pytest.approx([0.5, 1.207107], abs=1e-6)
    torch.manual_seed(0)
    jac = torch.randn(4, 9, dtype=torch.float64)
    torch.testing.assert_close(weights(pb.ConFIG(), jac @ jac.T) @ jac, tja.ConFIG()(jac))


def test_upgrad_and_dualproj() -> None:
    # K = 2: UPGrad = mean of the two projections (1, 1) and (0, 1) → (0.5, 1) = 0.75 g1 + 1 g2
    torch.testing.assert_close(
        weights(pb.UPGrad(reg_eps=1e-12)),
        torch.tensor([0.75, 1.0], dtype=torch.float64),
        atol=1e-6,
        rtol=1e-6,
    )
    # the mean (0.5, 0.5) already satisfies g1·ḡ = 1 ≥ 0, g2·ḡ = 0 ≥ 0 → unchanged
    torch.testing.assert_close(
        weights(pb.DualProj(reg_eps=1e-12)),
        torch.tensor([0.5, 0.5], dtype=torch.float64),
        atol=1e-6,
        rtol=1e-6,
    )


def test_aligned_mtl() -> None:
    # B = √λ_min G^{-1/2}; for 2×2 PD M: √M = (M + √det I)/√(tr + 2√det)
    sqrt_g = (G + 2.0 * torch.eye(2, dtype=torch.float64)) / math.sqrt(6 + 4)
    b = math.sqrt(3 - math.sqrt(5)) * torch.linalg.inv(sqrt_g)
    expected = b @ torch.tensor([0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(weights(pb.AlignedMTL()), expected)
    assert expected.tolist() == pytest.approx([0.414590, 0.552786], abs=1e-6)


@pytest.mark.parametrize("k", [3, 12, 40])
@pytest.mark.parametrize("degenerate", ["none", "duplicate", "zero"])
@pytest.mark.parametrize("mode", ["min", "median", "rmse"])
def test_aligned_mtl_matches_torchjd(k: int, degenerate: str, mode: str) -> None:
    import torchjd.aggregation as tja

    gen = torch.Generator().manual_seed(k)
    jac = torch.randn(k, 30, generator=gen, dtype=torch.float64)
    if degenerate == "duplicate":
        jac[1] = jac[0]
    elif degenerate == "zero":
        jac[0] = 0.0
    gram = jac @ jac.T
    theirs = tja.AlignedMTLWeighting(scale_mode=mode)(gram)
    torch.testing.assert_close(weights(pb.AlignedMTL(mode), gram), theirs)


def test_cagrad_against_a_grid_search_of_the_dual() -> None:
    c = 0.4
    g0 = J.mean(0)
    gam = torch.arange(20001, dtype=torch.float64) / 20000  # the grid, all points at once
    gw = gam[:, None] * J[0] + (1 - gam[:, None]) * J[1]
    best = float(gam[(gw @ g0 + c * g0.norm() * gw.norm(dim=1)).argmin()])  # first minimum
    ww = torch.tensor([best, 1 - best], dtype=torch.float64)
    expected = 0.5 + c * g0.norm() / (ww @ J).norm() * ww
    torch.testing.assert_close(weights(pb.CAGrad(c=c)), expected, atol=2e-4, rtol=2e-4)
    torch.testing.assert_close(
        weights(pb.CAGrad(c=0.0)), torch.full((2,), 0.5, dtype=torch.float64)
    )


def test_nash_mtl_solves_the_bargaining_equation() -> None:
    alpha = weights(pb.NashMTL(max_norm=0.0))
    torch.testing.assert_close(G @ alpha, 1.0 / alpha, atol=1e-7, rtol=1e-7)
    # clipping: ‖Jᵀα‖ = √(αᵀGα) ≤ max_norm
    clipped = weights(pb.NashMTL(max_norm=0.1))
    assert float((clipped @ G @ clipped).sqrt()) == pytest.approx(0.1)


def test_nash_mtl_matches_torchjd() -> None:
    needs("cvxpy")
    import torchjd.aggregation as tja

    torch.manual_seed(0)
    jac = torch.randn(3, 6, dtype=torch.float64)
    theirs = tja.NashMTL(n_tasks=3, max_norm=1.0, optim_niter=50).weighting(jac)
    torch.testing.assert_close(weights(pb.NashMTL(), jac @ jac.T), theirs, atol=1e-4, rtol=1e-3)
    # where torchjd's convex-concave sequence stalls at its start (ones), ours still solves it
    torch.manual_seed(2)
    jac = torch.randn(3, 6, dtype=torch.float64)
    alpha = weights(pb.NashMTL(max_norm=0.0), jac @ jac.T)
    torch.testing.assert_close((jac @ jac.T) @ alpha * alpha, torch.ones(3, dtype=torch.float64))


def test_fairgrad() -> None:
    # α = 1: G w = 1/w, the same equation as Nash-MTL; α = 2: G w = w^{-1/2}
    w1 = weights(pb.FairGrad(alpha=1.0))
    torch.testing.assert_close(w1, weights(pb.NashMTL(max_norm=0.0)), atol=1e-6, rtol=1e-5)
    w2 = weights(pb.FairGrad(alpha=2.0))
    torch.testing.assert_close(G @ w2, w2 ** (-0.5), atol=1e-6, rtol=1e-5)


def test_graddrop_by_hand() -> None:
    jac = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    torch.manual_seed(0)
    u = torch.rand(2, dtype=torch.float64)
    # column 0: purity 1 → both positive entries kept; column 1: purity (1 + 1/3)/2
    p1 = 0.5 * (1 + 1 / 3)
    expected = torch.tensor([4.0, 2.0 if p1 > float(u[1]) else -1.0], dtype=torch.float64)
    torch.manual_seed(0)
    upd, w = pb.GradDrop().aggregate(
        Statistics(losses=torch.ones(2), gramian=jac @ jac.T, jacobian=jac)
    )
    torch.testing.assert_close(upd, expected)
    assert w.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("k", [3, 12, 40])
def test_faster_solvers_match_torchjd(k: int) -> None:
    import torchjd.aggregation as tja

    torch.manual_seed(k)
    jac = torch.randn(k, 50, dtype=torch.float64) + 0.4 * torch.randn(1, 50, dtype=torch.float64)
    jac[1] = -jac[0] + 0.1 * jac[1]
    gram = jac @ jac.T
    torch.testing.assert_close(weights(pb.UPGrad(), gram), tja.UPGradWeighting()(gram))
    torch.testing.assert_close(weights(pb.MGDA(), gram), tja.MGDAWeighting()(gram))
    for alpha in (0.5, 2.0):
        torch.testing.assert_close(
            weights(pb.FairGrad(alpha=alpha), gram),
            tja.FairGradWeighting(alpha=alpha)(gram),
            atol=1e-5,
            rtol=1e-4,
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cagrad_matches_torchjd(seed: int) -> None:
    needs("cvxpy")
    import torchjd.aggregation as tja

    torch.manual_seed(seed)
    jac = torch.randn(7, 30, dtype=torch.float64) + 0.3 * torch.randn(1, 30, dtype=torch.float64)
    jac[1] = -0.7 * jac[0] + 0.2 * jac[1]
    gram = jac @ jac.T
    for c in (0.2, 0.4, 1.0):
        ours, theirs = weights(pb.CAGrad(c=c), gram), tja.CAGradWeighting(c=c)(gram)
        # both solve the dual to ~1e-9 in objective; weights agree to the solvers' precision
        torch.testing.assert_close(ours, theirs, atol=2e-3 * float(theirs.abs().max()), rtol=0)


@pytest.mark.parametrize("leak", [None, [0.0, 0.3, 1.0, 0.5]])
def test_graddrop_equals_torchjd_with_the_same_draw(leak) -> None:
    import torchjd.aggregation as tja

    from polytask.balancing import GradDrop
    from polytask.balancing.base import Statistics

    jac = torch.randn(4, 50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    jac[:, :5] = 0.0  # coordinates no task touches
    ref_leak = None if leak is None else torch.tensor(leak, dtype=torch.float64)
    torch.manual_seed(7)
    ref = tja.GradDrop(leak=ref_leak)(jac)
    torch.manual_seed(7)
    got, w = GradDrop(leak=leak).aggregate(Statistics(losses=torch.ones(4), jacobian=jac))
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=1e-12)
    assert w.tolist() == [1.0] * 4
