"""``G⁺b`` by a certified Cholesky solve or the pseudo-inverse (IMTL-G, ConFIG): the path taken
on well-, ill- and singular Gramians, the same answers as the pseudo-inverse, and both methods
against torchjd with and without a duplicated or zero task."""

from __future__ import annotations

import pytest
import torch

import polytask.balancing as pb
from polytask.balancing.aggregator.pinv_solve import certified_cholesky, pinv_solve
from polytask.balancing.base import Statistics


def spectrum_gramian(eigs: list[float], seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize(
    ("eigs", "cholesky"),
    [
        ([1.0, 0.5, 0.2, 0.1, 0.05], True),  # cond 20
        ([1.0, 0.5, 0.2, 0.1, 1e-4], True),  # cond 1e4
        ([1.0, 0.5, 0.2, 0.1, 1e-7], False),  # cond 1e7: not certified below 1e8
        ([1.0, 0.5, 0.2, 0.1, 1e-10], False),  # cond 1e10: pinv keeps the eigenvalue
        ([1.0, 0.5, 0.2, 0.1, 0.0], False),  # singular: pinv drops it
    ],
)
def test_the_path_and_the_answer(eigs: list[float], cholesky: bool) -> None:
    g = spectrum_gramian(eigs)
    b = torch.arange(1.0, 6.0, dtype=torch.float64)
    assert (certified_cholesky(g) is not None) == cholesky
    ref = torch.linalg.pinv(g, hermitian=True) @ b
    got = pinv_solve(g, b)
    torch.testing.assert_close(got, ref, rtol=1e-8 * ref.abs().max().item(), atol=1e-8)


@pytest.mark.parametrize("k", [3, 12, 40])
@pytest.mark.parametrize("degenerate", ["none", "duplicate", "zero"])
def test_imtl_g_and_config_match_torchjd(k: int, degenerate: str) -> None:
    import torchjd.aggregation as tja

    gen = torch.Generator().manual_seed(k)
    jac = torch.randn(k, 60, generator=gen, dtype=torch.float64)
    if degenerate == "duplicate":
        jac[2] = jac[0]
    elif degenerate == "zero":
        jac[1] = 0.0
    gram = jac @ jac.T
    stats = Statistics(losses=torch.ones(k), gramian=gram)
    torch.testing.assert_close(pb.IMTLG().weights(stats), tja.IMTLGWeighting()(gram))
    if degenerate != "zero":  # torchjd's ConFIG divides by a zero gradient's norm
        torch.testing.assert_close(pb.ConFIG().weights(stats) @ jac, tja.ConFIG()(jac))
