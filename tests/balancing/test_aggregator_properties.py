"""Property battery run over EVERY gradient aggregator (Gramian weightings and Jacobian ones)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

import polytask.balancing as pb
from polytask.balancing.base import BalancingMethod, Statistics

FACTORIES: dict[str, Callable[[], BalancingMethod]] = {
    "mgda": lambda: pb.MGDA(epsilon=1e-6, max_iters=2000),
    "pcgrad": pb.PCGrad,
    "gradvac": pb.GradVac,
    "graddrop": pb.GradDrop,
    "cagrad": pb.CAGrad,
    "imtl_g": pb.IMTLG,
    "nash_mtl": lambda: pb.NashMTL(max_norm=0.0),
    "aligned_mtl": pb.AlignedMTL,
    # small ridge: the default 1e-4 (torchjd's) makes non-conflict hold only to ~1e-3
    "upgrad": lambda: pb.UPGrad(reg_eps=1e-9),
    "dualproj": lambda: pb.DualProj(reg_eps=1e-9),
    "config": pb.ConFIG,
    "fairgrad": pb.FairGrad,
}
RANDOM = {"pcgrad", "gradvac", "graddrop"}
# update(c·J) = c**e · update(J): FairGrad(α=1) and Nash-MTL (no clipping) are scale-free.
SCALE_EXPONENT = {"nash_mtl": 0.0, "fairgrad": 0.0}


def update(method: BalancingMethod, jac: Tensor) -> Tensor:
    stats = Statistics(losses=torch.ones(jac.shape[0], dtype=jac.dtype), gramian=jac @ jac.T)
    if "jacobian" in method.needs:
        stats.jacobian = jac
        return method.aggregate(stats)[0]
    return method.weights(stats) @ jac


def jacobian(m: int, n: int = 7, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_shape_and_finite(name: str) -> None:
    jac = jacobian(4)
    torch.manual_seed(0)
    d = update(FACTORIES[name](), jac)
    assert d.shape == (7,)
    assert bool(torch.isfinite(d).all())
    assert float(d.norm()) > 1e-6  # a non-trivial direction on a generic Jacobian


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_task_order_permutation_invariance(name: str) -> None:
    # random-order methods are deterministic for two tasks; GradDrop's draw is per coordinate
    m = 2 if name in {"pcgrad", "gradvac"} else 4
    jac = jacobian(m, seed=1)
    perm = torch.tensor([2, 0, 3, 1]) if m == 4 else torch.tensor([1, 0])
    torch.manual_seed(3)
    d1 = update(FACTORIES[name](), jac)
    torch.manual_seed(3)
    d2 = update(FACTORIES[name](), jac[perm])
    torch.testing.assert_close(d1, d2, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(n for n in FACTORIES if FACTORIES[n]().non_conflicting))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_non_conflicting_where_claimed(name: str, seed: int) -> None:
    jac = jacobian(4, n=5, seed=seed)
    jac[1] = -0.8 * jac[0] + 0.3 * jac[1]  # a strong conflict
    d = update(FACTORIES[name](), jac)
    scale = float(jac.norm(dim=1).max() * d.norm())
    assert bool((jac @ d >= -1e-4 * scale).all()), (jac @ d).tolist()


def test_claims_match_expectation() -> None:
    claimed = {n for n in FACTORIES if FACTORIES[n]().non_conflicting}
    assert claimed == {"mgda", "upgrad", "dualproj", "config", "nash_mtl", "fairgrad"}


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("c", [0.01, 7.0])
def test_scale_behaviour(name: str, c: float) -> None:
    jac = jacobian(3, seed=4)
    torch.manual_seed(5)
    d1 = update(FACTORIES[name](), jac)
    torch.manual_seed(5)
    d2 = update(FACTORIES[name](), c * jac)
    e = SCALE_EXPONENT.get(name, 1.0)
    torch.testing.assert_close(d2, c**e * d1, atol=1e-6 * max(1.0, c), rtol=2e-3)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_identical_rows_give_that_direction(name: str) -> None:
    g = jacobian(1, n=6, seed=6)[0]
    jac = torch.stack([g, g, g])
    torch.manual_seed(0)
    d = update(FACTORIES[name](), jac)
    cos = float(d @ g / (d.norm() * g.norm()))
    assert cos == pytest.approx(1.0, abs=1e-6)


def test_random_methods_are_listed() -> None:
    assert set(FACTORIES) >= RANDOM
