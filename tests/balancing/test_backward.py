"""``balanced_backward`` / ``Balancer.backward`` fill the same grads as a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

import polytask.balancing as pb
from polytask._core import NonFiniteLossError, PolytaskError


def grads(model: torch.nn.Module) -> dict[str, Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def per_task(losses: Tensor, params: list[Tensor]) -> list[list[Tensor]]:
    return [list(torch.autograd.grad(loss, params, retain_graph=True)) for loss in losses]


def test_ew_equals_sum_backward_exactly(tiny) -> None:
    model, x, y = tiny()
    losses, _ = model.losses(x, y)
    losses.sum().backward()
    ref = grads(model)
    model.zero_grad(set_to_none=True)
    losses, _ = model.losses(x, y)
    w = pb.balanced_backward(losses, model.trunk.parameters(), pb.EW())
    got = grads(model)
    assert w.tolist() == [1.0, 1.0, 1.0]
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k


def test_sequence_of_scalars_is_accepted(tiny) -> None:
    model, x, y = tiny(m=2)
    losses, _ = model.losses(x, y)
    w = pb.balanced_backward([losses[0], losses[1]], model.trunk.parameters(), pb.EW())
    assert w.shape == (2,)
    assert all(p.grad is not None for p in model.parameters())


def test_exact_mode_gramian_method_by_hand(tiny) -> None:
    model, x, y = tiny()
    shared = list(model.trunk.parameters())
    heads = list(model.heads.parameters())
    losses, _ = model.losses(x, y)
    rows = per_task(losses, shared)
    jac = torch.stack([torch.cat([g.flatten() for g in r]) for r in rows])
    head_ref = [sum(r) for r in zip(*per_task(losses, heads))]
    w_ref = pb.MGDA().weights(pb.Statistics(losses=losses.detach(), gramian=jac @ jac.T))
    res = pb.Balancer(pb.MGDA()).backward(losses, shared)
    torch.testing.assert_close(res.weights, w_ref)
    torch.testing.assert_close(res.gramian, jac @ jac.T)
    upd = w_ref @ jac
    got = torch.cat([p.grad.flatten() for p in shared])
    torch.testing.assert_close(got, upd)
    for p, g in zip(heads, head_ref):  # heads: plain unweighted gradients
        torch.testing.assert_close(p.grad, g)


@pytest.mark.parametrize("m", [3, 5])  # 3: factored linear-head path; 5 (≥ width 4): generic
def test_features_mode_matches_formula(tiny, m: int) -> None:
    model, x, y = tiny(m=m)
    shared = list(model.trunk.parameters())
    losses, z = model.losses(x, y)
    dz = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses])
    gram = dz.flatten(1) @ dz.flatten(1).T
    w_ref = pb.UPGrad().weights(pb.Statistics(losses=losses.detach(), gramian=gram))
    trunk_ref = torch.autograd.grad(
        z, shared, grad_outputs=torch.einsum("k,kbd->bd", w_ref, dz), retain_graph=True
    )
    head_ref = torch.autograd.grad(losses.sum(), list(model.heads.parameters()), retain_graph=True)
    res = pb.Balancer(pb.UPGrad(), mode="features").backward(losses, shared, features=z)
    torch.testing.assert_close(res.gramian, gram)
    torch.testing.assert_close(res.weights, w_ref)
    for p, g in zip(shared, trunk_ref):
        torch.testing.assert_close(p.grad, g)
    for p, g in zip(model.heads.parameters(), head_ref):
        torch.testing.assert_close(p.grad, g)


def test_balanced_backward_picks_features_mode(tiny) -> None:
    model, x, y = tiny()
    losses, z = model.losses(x, y)
    dz = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses])
    w_ref = pb.IMTLG().weights(
        pb.Statistics(losses.detach(), gramian=dz.flatten(1) @ dz.flatten(1).T)
    )
    w = pb.balanced_backward(losses, model.trunk.parameters(), pb.IMTLG(), features=z)
    torch.testing.assert_close(w, w_ref)


def test_loss_weighting_backprops_weighted_sum_and_learns_uw(tiny) -> None:
    model, x, y = tiny(m=2)
    uw = pb.UW(n_tasks=2)
    losses, _ = model.losses(x, y)
    ref = torch.autograd.grad((0.5 * losses).sum(), list(model.parameters()), retain_graph=True)
    pb.balanced_backward(losses, model.trunk.parameters(), uw)
    for p, g in zip(model.parameters(), ref):
        torch.testing.assert_close(p.grad, g)
    # d/ds_k [½e^{-s_k} L_k + ½ s_k] at s = 0 is ½(1 - L_k)
    torch.testing.assert_close(uw.log_vars.grad, 0.5 * (1 - losses.detach().float()))


def test_gradnorm_uses_last_shared_parameter(tiny) -> None:
    model, x, y = tiny(m=2)
    shared = list(model.trunk.parameters())
    losses, _ = model.losses(x, y)
    norms = torch.stack([g[0].norm() for g in per_task(losses, shared[-1:])])
    gn = pb.GradNorm(lr=0.1)
    res = pb.Balancer(gn).backward(losses, shared)
    assert res.weights.tolist() == [1.0, 1.0]
    g = norms.double()
    target = g.mean()  # first call: r = 1
    new = (1 - 0.1 * torch.sign(g - target) * g).clamp_min(1e-6)
    torch.testing.assert_close(gn.task_weights, 2 * new / new.sum())


def test_every_reuses_weights(tiny) -> None:
    model, x, y = tiny()
    shared = list(model.trunk.parameters())
    bal = pb.Balancer(pb.MGDA(), every=2)
    losses, _ = model.losses(x, y)
    first = bal.backward(losses, shared)
    assert first.recomputed and first.gramian is not None
    model.zero_grad(set_to_none=True)
    losses, _ = model.losses(x * 0.5, y)
    rows = per_task(losses, shared)
    jac = torch.stack([torch.cat([g.flatten() for g in r]) for r in rows])
    head_ref = [sum(r) for r in zip(*per_task(losses, list(model.heads.parameters())))]
    second = bal.backward(losses, shared)
    assert not second.recomputed and second.gramian is None
    torch.testing.assert_close(second.weights, first.weights)
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in shared]), first.weights @ jac)
    for p, g in zip(model.heads.parameters(), head_ref):
        torch.testing.assert_close(p.grad, g)
    losses, _ = model.losses(x, y)
    assert bal.backward(losses, shared).recomputed  # step 2 of every=2


def test_every_in_features_mode(tiny) -> None:
    model, x, y = tiny()
    shared = list(model.trunk.parameters())
    bal = pb.Balancer(pb.ConFIG(), mode="features", every=3)
    losses, z = model.losses(x, y)
    w = bal.backward(losses, shared, features=z).weights
    model.zero_grad(set_to_none=True)
    losses, z = model.losses(x, y)
    dz = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses])
    ref = torch.autograd.grad(
        z, shared, grad_outputs=torch.einsum("k,kbd->bd", w, dz), retain_graph=True
    )
    bal.backward(losses, shared, features=z)
    for p, g in zip(shared, ref):
        torch.testing.assert_close(p.grad, g)


def test_log_dict_is_linear_in_the_tasks() -> None:
    # the per-step log line holds O(m) numbers: never the m(m-1)/2 cosines of the Gramian
    g = torch.tensor([[4.0, -2.0, 0.0], [-2.0, 2.0, 1.0], [0.0, 1.0, 1.0]])
    log = pb.BalanceResult(weights=torch.tensor([1.0, 2.0, 3.0]), gramian=g).log_dict()
    # update ratio √(wᵀGw / 1ᵀG1): Gw = (0, 5, 5), wᵀGw = 25, 1ᵀG1 = 5
    assert log == {"weights": [1.0, 2.0, 3.0], "recomputed": 1.0, "update_ratio": 5**0.5}
    assert pb.BalanceResult(weights=torch.ones(3)).log_dict() == {
        "weights": [1.0, 1.0, 1.0],
        "recomputed": 1.0,
    }


def test_errors(tiny) -> None:
    model, x, y = tiny()
    shared = list(model.trunk.parameters())
    losses, _ = model.losses(x, y)
    with pytest.raises(PolytaskError, match="at least 2"):
        pb.balanced_backward(losses[:1], shared, pb.MGDA())
    with pytest.raises(NonFiniteLossError, match=r"\[1\]"):
        pb.balanced_backward(losses * torch.tensor([1.0, math.nan, 1.0]), shared, pb.EW())
    with pytest.raises(PolytaskError, match="features="):
        pb.Balancer(pb.MGDA(), mode="features").backward(losses, shared)
    with pytest.raises(PolytaskError, match="cannot run in mode 'features'"):
        pb.Balancer(pb.DBMTL(), mode="features")
    with pytest.raises(PolytaskError, match="every"):
        pb.Balancer(pb.GradDrop(), every=2)
    with pytest.raises(PolytaskError, match="mode"):
        pb.Balancer(pb.EW(), mode="fast")


@pytest.mark.parametrize("method", [pb.MGDA, pb.GradDrop])  # Gramian check; Jacobian: update
def test_non_finite_gradient_is_reported(tiny, method) -> None:
    model, x, y = tiny()
    shared = list(model.trunk.parameters())
    losses, z = model.losses(x, y)
    u = (z[0, 0] - z[0, 0].detach()) ** 2  # value 0, d√u/du = inf there: a NaN gradient
    bad = torch.stack([losses[0], losses[1] + u.sqrt(), losses[2]])
    assert bool(torch.isfinite(bad).all())
    with pytest.raises(NonFiniteLossError, match=r"gradient|update"):
        pb.Balancer(method(), mode="features").backward(bad, shared, features=z)


@pytest.mark.parametrize("m", [3, 5])
def test_features_mode_jacobian_method_sees_feature_rows(tiny, m: int) -> None:
    model, x, y = tiny(m=m)
    shared = list(model.trunk.parameters())
    losses, z = model.losses(x, y)
    dz = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses])
    torch.manual_seed(0)
    upd = pb.GradDrop().aggregate(pb.Statistics(losses.detach(), jacobian=dz.flatten(1)))[0]
    ref = torch.autograd.grad(z, shared, grad_outputs=upd.reshape(z.shape), retain_graph=True)
    torch.manual_seed(0)
    pb.Balancer(pb.GradDrop(), mode="features").backward(losses, shared, features=z)
    for p, g in zip(shared, ref):
        torch.testing.assert_close(p.grad, g)


def test_features_mode_with_separate_linear_heads(tiny) -> None:
    # three linear heads consuming Z (one without bias: an mm node): stacked into one factor
    model, x, y = tiny()
    heads = [torch.nn.Linear(4, 1, bias=i > 0).double() for i in range(3)]
    z = model.trunk(x)
    losses = torch.stack([((h(z)[:, 0] - y[:, i]) ** 2).mean() for i, h in enumerate(heads)])
    dz = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses])
    gram = dz.flatten(1) @ dz.flatten(1).T
    res = pb.Balancer(pb.MGDA(), mode="features").backward(
        losses, model.trunk.parameters(), features=z
    )
    torch.testing.assert_close(res.gramian, gram)
    assert all(h.weight.grad is not None for h in heads)


@pytest.mark.parametrize("m", [3, 5])  # factored and generic paths
def test_gradnorm_features_norms(tiny, m: int) -> None:
    from polytask.balancing.statistic import layer_grad_norms

    model, x, y = tiny(m=m)
    losses, z = model.losses(x, y)
    ref = torch.stack(
        [torch.autograd.grad(loss, z, retain_graph=True)[0].norm() for loss in losses]
    )
    got = layer_grad_norms(losses, list(model.trunk.parameters()), z, True)
    torch.testing.assert_close(got, ref)


def test_docs_hand_written_loop_example_runs() -> None:
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "balancing.md"
    text = doc.read_text(encoding="utf-8")
    start = text.index("```python\nimport torch")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    scope: dict[str, object] = {}
    exec(compile(code, str(doc), "exec"), scope)
    w = scope["w"]
    assert isinstance(w, Tensor) and w.shape == (3,)


@pytest.mark.parametrize("overlap", [False, True])
def test_factored_features_path_disjoint_and_overlapping_columns(tiny, overlap: bool) -> None:
    # disjoint: task k reads only column k of the stacked head (compact R_Σ path);
    # overlapping: task 0 also reads column 1 (general R (A Aᵀ) Rᵀ path). Both equal the formula.
    from polytask.balancing.statistic import task_gradients

    model, x, y = tiny(m=3)
    z = model.trunk(x)
    out = model.heads(z)
    mix = out[:, 0] + (0.5 * out[:, 1] if overlap else 0.0)
    losses = torch.stack(
        [((mix - y[:, 0]) ** 2).mean(), ((out[:, 1] - y[:, 1]) ** 2).mean(), out[:, 2].mean()]
    )
    dz = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses])
    tg = task_gradients(losses, list(model.trunk.parameters()), z, True)
    assert tg.a is not None and not tg.blocks  # factored, no explicit rows
    assert (tg.owners is None) == overlap
    torch.testing.assert_close(tg.gramian(), dz.flatten(1) @ dz.flatten(1).T)
    w = torch.tensor([0.2, -1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(tg.combine(w)[0], torch.einsum("k,kbd->bd", w, dz))


@pytest.mark.parametrize(("m", "overlap"), [(3, False), (12, False), (12, True)])
def test_factor_norms_equal_the_explicit_feature_gradient_norms(m: int, overlap: bool) -> None:
    # small (direct form), large with disjoint columns (ownership form), large overlapping
    from polytask.balancing.task_gradients import TaskGradients

    gen = torch.Generator().manual_seed(m)
    r = torch.zeros(m, 16, m, dtype=torch.float64)
    for k in range(m):
        r[k, :, k] = torch.randn(16, generator=gen, dtype=torch.float64)
    if overlap:
        r[0, :, 1] = torch.randn(16, generator=gen, dtype=torch.float64)
    a = torch.randn(m, 8, generator=gen, dtype=torch.float64)
    expected = torch.stack([(r[k] @ a).norm() for k in range(m)])
    torch.testing.assert_close(TaskGradients([], [], [], True, a=a, r=r).norms(), expected)
