"""Pinned values of each loss weighting on fixed loss histories, derived by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import polytask.balancing as pb
from polytask.balancing.base import Statistics


def stats(*losses: float, norms: Tensor | None = None) -> Statistics:
    return Statistics(losses=torch.tensor(losses, dtype=torch.float64), grad_norms=norms)


def test_ew() -> None:
    assert pb.EW().weights(stats(3.0, 0.1)).tolist() == [1.0, 1.0]


def test_uw_weights_and_regularizer() -> None:
    uw = pb.UW(n_tasks=2)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.0, math.log(2.0)]))
    # ½ e^{-s} and ½ Σ s
    assert uw.weights(stats(1.0, 1.0)).tolist() == pytest.approx([0.5, 0.25])
    assert float(uw.regularizer().detach()) == pytest.approx(0.5 * math.log(2.0))
    assert [p is uw.log_vars for p in uw.parameters()] == [True]


def test_imtl_l_weights_and_regularizer() -> None:
    m = pb.IMTLL(n_tasks=2)
    with torch.no_grad():
        m.log_scales.copy_(torch.tensor([0.0, math.log(2.0)]))
    assert m.weights(stats(1.0, 1.0)).tolist() == pytest.approx([1.0, 2.0])
    assert float(m.regularizer().detach()) == pytest.approx(-math.log(2.0))


def test_dwa() -> None:
    dwa = pb.DWA(temperature=2.0)
    assert dwa.weights(stats(1.0, 2.0)).tolist() == [1.0, 1.0]
    assert dwa.weights(stats(0.5, 2.0)).tolist() == [1.0, 1.0]
    # r = (0.5/1, 2/2); w = 2 softmax(r / 2) = 2 (e^.25, e^.5)/(e^.25 + e^.5)
    e1, e2 = math.exp(0.25), math.exp(0.5)
    expected = [2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)]
    assert dwa.weights(stats(0.4, 1.0)).tolist() == pytest.approx(expected)
    assert expected == pytest.approx([0.875646, 1.124354], abs=1e-6)


def test_rlw() -> None:
    torch.manual_seed(7)
    z = torch.randn(3, dtype=torch.float64)
    torch.manual_seed(7)
    w = pb.RLW().weights(stats(1.0, 2.0, 3.0))
    torch.testing.assert_close(w, torch.softmax(z, 0))
    assert float(w.sum()) == pytest.approx(1.0)


def test_gls_weights_and_exact_gradient() -> None:
    # L = (1, 4): geometric mean 2, w = 2/(2·1), 2/(2·4)
    assert pb.GLS().weights(stats(1.0, 4.0)).tolist() == pytest.approx([1.0, 0.25])
    theta = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    losses = torch.stack([(theta**2).sum() + 1, (theta - 1).pow(2).sum() + 0.5])
    (ref,) = torch.autograd.grad(losses.prod().sqrt(), theta, retain_graph=True)
    w = pb.GLS().weights(Statistics(losses=losses.detach()))
    (got,) = torch.autograd.grad((w * losses).sum(), theta)
    torch.testing.assert_close(got, ref)


def test_famo_two_calls_by_hand() -> None:
    famo = pb.FAMO(lr=0.025, weight_decay=0.0, eps=0.0)
    # z = (½, ½), c = ½/1 + ½/2 = ¾, w = z / (c L)
    assert famo.weights(stats(1.0, 2.0)).tolist() == pytest.approx([2 / 3, 1 / 3])
    # δ = (log 2, 0); first Adam step moves each logit by lr·sign(grad) → ξ = (-.025, .025)
    z1 = 1 / (1 + math.exp(0.05))
    z = [z1, 1 - z1]
    c = z[0] / 0.5 + z[1] / 2.0
    got = famo.weights(stats(0.5, 2.0)).tolist()
    assert got == pytest.approx([z[0] / (c * 0.5), z[1] / (c * 2.0)], rel=1e-6)
    assert got == pytest.approx([0.791878, 0.208122], abs=1e-5)


def test_famo_logits_follow_torch_adam() -> None:
    famo = pb.FAMO(lr=0.05, weight_decay=0.01)
    xi = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([xi], lr=0.05, weight_decay=0.01)
    history = [(1.0, 2.0, 3.0), (0.9, 2.1, 2.5), (0.7, 2.0, 2.6), (0.6, 1.5, 2.7), (0.5, 1.6, 2.0)]
    prev = None
    for losses in history:
        famo.weights(stats(*losses))
        cur = torch.tensor(losses, dtype=torch.float64) + 1e-8
        if prev is not None:
            delta = prev.log() - cur.log()
            (g,) = torch.autograd.grad(torch.softmax(xi, 0), xi, grad_outputs=delta)
            xi.grad = g
            opt.step()
        prev = cur
    torch.testing.assert_close(famo.logits, xi.detach(), atol=1e-12, rtol=1e-10)


def test_gradnorm_two_calls_by_hand() -> None:
    gn = pb.GradNorm(alpha=1.5, lr=0.025)
    norms = torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert gn.weights(stats(1.0, 1.0, norms=norms)).tolist() == [1.0, 1.0]
    # G = (1, 3), Ḡ = 2, r = (1, 1): target (2, 2); sign(G - t) = (-1, +1)
    # w ← (1 + .025·1, 1 - .025·3) = (1.025, .925), renormalised to sum 2
    expected = [1.025 * 2 / 1.95, 0.925 * 2 / 1.95]
    assert gn.weights(stats(0.5, 1.0, norms=norms)).tolist() == pytest.approx(expected)


def test_db_mtl_beta_zero_by_hand() -> None:
    jac = torch.tensor([[2.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    st = Statistics(losses=torch.tensor([1.0, 2.0], dtype=torch.float64), jacobian=jac)
    upd, w = pb.DBMTL(beta=0.0, eps=0.0).aggregate(st)
    # g̃ = g / L = (2, 0), (-.5, .5); α = max‖g̃‖/‖g̃_k‖ = (1, 2√2)
    alpha = torch.tensor([1.0, 2 * math.sqrt(2)], dtype=torch.float64)
    torch.testing.assert_close(upd, alpha[0] * jac[0] + alpha[1] * jac[1] / 2)
    torch.testing.assert_close(w, alpha / torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_db_mtl_ema() -> None:
    m = pb.DBMTL(beta=0.9, beta_sigma=0.5, eps=0.0)
    j1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    j2 = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    ones = torch.ones(2, dtype=torch.float64)
    m.aggregate(Statistics(losses=ones, jacobian=j1))  # step 1: ĝ = g + .9(0 - g) = .1 g
    upd, _ = m.aggregate(Statistics(losses=ones, jacobian=j2))
    b = 0.9 / math.sqrt(2)
    ema = j2 + b * (0.1 * j1 - j2)
    norms = ema.norm(dim=1)
    torch.testing.assert_close(upd, (norms.max() / (norms + 1e-8)) @ ema)
