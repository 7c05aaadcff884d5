"""MMoE (polytask.models.moe): hand-computed values, gates, gradient ownership, balancing, I/O."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from polytask._core import PolytaskError
from polytask.balancing import Balancer, Statistics, UPGrad
from polytask.models import (
    LinearHeads,
    MoEHeads,
    MoELayout,
    MoETrunk,
    MultiTaskModel,
    build_moe_heads,
    moe_trunk,
)
from polytask.tasks import Task

OUT = {"a": 1, "b": 1, "c": 3}
SCALAR = {"a": True, "b": True, "c": False}


def _model(hidden: int | None = None, experts: int = 3, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    trunk = moe_trunk(6, (5,), experts, (4,), activation="tanh")  # tanh: no dead units
    return MultiTaskModel(trunk, MoEHeads(trunk.layout, OUT, SCALAR, hidden=hidden))


def _losses(model: MultiTaskModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ya, yb = torch.randn(len(x), generator=g), torch.randn(len(x), generator=g)
    yc = torch.randint(0, 3, (len(x),), generator=g)
    z = model.forward_features(x)
    out = model.forward_heads(z)
    losses = torch.stack(
        [F.mse_loss(out["a"], ya), F.mse_loss(out["b"], yb), F.cross_entropy(out["c"], yc)]
    )
    return losses, z


def test_hand_computed_gates_mixture_and_towers():
    # bottom = identity, x = (1, 2); E_1 = I x = (1, 2), E_2 = 2 I x = (2, 4)
    e1, e2 = nn.Linear(2, 2), nn.Linear(2, 2)
    trunk = MoETrunk([e1, e2], bottom=None, in_dim=2)
    heads = MoEHeads(trunk.layout, {"a": 1, "b": 2}, {"a": True, "b": False})
    with torch.no_grad():
        e1.weight.copy_(torch.eye(2)), e1.bias.zero_()
        e2.weight.copy_(2 * torch.eye(2)), e2.bias.zero_()
        heads.gate.weight.zero_()
        # task a: logits (0, ln 3) -> g_a = (1/4, 3/4); task b: logits (0, 0) -> g_b = (1/2, 1/2)
        heads.gate.bias.copy_(torch.tensor([0.0, math.log(3.0), 0.0, 0.0]))
        heads.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
        heads.bias.copy_(torch.tensor([0.5, 0.0, -1.0]))
    z = trunk(torch.tensor([[1.0, 2.0]]))
    assert trunk.layout == MoELayout(bottom_dim=2, num_experts=2, expert_dim=2)
    assert torch.allclose(z, torch.tensor([[1.0, 2.0, 1.0, 2.0, 2.0, 4.0]]))
    g = heads.gates(z)
    assert torch.allclose(g, torch.tensor([[[0.25, 0.75], [0.5, 0.5]]]))
    # f_a = 1/4 (1, 2) + 3/4 (2, 4) = (1.75, 3.5); f_b = 1/2 (1, 2) + 1/2 (2, 4) = (1.5, 3)
    assert torch.allclose(heads.mix(z), torch.tensor([[[1.75, 3.5], [1.5, 3.0]]]))
    out = heads(z)
    assert out["a"].shape == (1,) and out["b"].shape == (1, 2)
    assert out["a"].item() == pytest.approx(1.75 + 3.5 + 0.5)  # (1, 1) · f_a + 0.5
    assert torch.allclose(out["b"], torch.tensor([[1.5, 3.0 - 1.0]]))  # I f_b + (0, -1)
    assert list(heads(z, ["b"])) == ["b"]
    # one output per task (the batched tower path): y_a = (1, 1) · f_a + 0.5, y_b = (2, -1) · f_b
    scalar = MoEHeads(trunk.layout, {"a": 1, "b": 1}, {"a": True, "b": True})
    with torch.no_grad():
        scalar.gate.load_state_dict(heads.gate.state_dict())
        scalar.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, -1.0]]))
        scalar.bias.copy_(torch.tensor([0.5, 0.0]))
    out = scalar(z)
    assert out["a"].shape == (1,) and out["a"].item() == pytest.approx(5.75)
    assert out["b"].item() == pytest.approx(2 * 1.5 - 3.0)


@pytest.mark.parametrize("hidden", [None, 7])
def test_gates_are_distributions_and_expert_order_does_not_matter(hidden):
    model = _model(hidden)
    trunk, heads = model.trunk, model.heads
    assert isinstance(trunk, MoETrunk) and isinstance(heads, MoEHeads)
    x = torch.randn(9, 6)
    g = heads.gates(model.forward_features(x))
    assert g.shape == (9, 3, 3) and bool((g > 0).all())
    assert torch.allclose(g.sum(-1), torch.ones(9, 3))
    ref = model(x)
    # permuting the experts and every task's gate logits the same way leaves the outputs unchanged
    perm = [2, 0, 1]
    trunk.experts = nn.ModuleList([trunk.experts[i] for i in perm])
    with torch.no_grad():
        rows = torch.tensor([k * 3 + i for k in range(3) for i in perm])
        heads.gate.weight.copy_(heads.gate.weight[rows].clone())
        heads.gate.bias.copy_(heads.gate.bias[rows].clone())
    new = model(x)
    for t in OUT:
        assert torch.allclose(new[t], ref[t], atol=1e-6)


def test_one_expert_is_the_shared_bottom_plus_that_expert():
    model = _model(experts=1)
    trunk, heads = model.trunk, model.heads
    assert isinstance(trunk, MoETrunk) and isinstance(heads, MoEHeads)
    plain = MultiTaskModel(
        nn.Sequential(trunk.bottom, trunk.experts[0]), LinearHeads(4, OUT, SCALAR)
    )
    with torch.no_grad():
        plain.heads.linear.weight.copy_(heads.weight)
        plain.heads.linear.bias.copy_(heads.bias)
    x = torch.randn(5, 6)
    assert torch.equal(heads.gates(model.forward_features(x)), torch.ones(5, 3, 1))
    got, want = model(x), plain(x)
    for t in OUT:
        assert torch.allclose(got[t], want[t], atol=1e-6)


@pytest.mark.parametrize("hidden", [None, 7])
def test_task_parameters_only_get_their_own_tasks_gradient(hidden):
    model = _model(hidden)
    heads = model.heads
    assert isinstance(heads, MoEHeads)
    shared = {id(p) for p in model.shared_parameters()}
    assert shared == {id(p) for p in model.trunk.parameters()}
    assert {id(p) for p in model.task_parameters()} == {id(p) for p in heads.parameters()}
    x = torch.randn(8, 6)
    rows = {"a": slice(0, 1), "b": slice(1, 2), "c": slice(2, 5)}  # tower rows per task
    for k, task in enumerate(OUT):
        model.zero_grad()
        out = model(x)
        (out[task] ** 2).sum().backward()
        gate_rows = heads.gate.weight.grad.reshape(3, 3, -1)  # [task, expert, d_h]
        for j, other in enumerate(OUT):
            own = j == k
            assert (gate_rows[j].abs().sum() > 0) == own
            assert (heads.weight.grad[rows[other]].abs().sum() > 0) == own
            if hidden is not None:
                assert (heads.hidden_weight.grad[j].abs().sum() > 0) == own
        for p in model.shared_parameters():  # every expert and the bottom learn from every task
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_features_balancing_equals_per_task_autograd_on_z():
    model = _model(hidden=7)
    x = torch.randn(10, 6)
    losses, z = _losses(model, x)
    result = Balancer(UPGrad(), mode="features").backward(
        losses, model.shared_parameters(), features=z
    )
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    losses, z = _losses(model, x)
    jac = torch.stack(
        [torch.autograd.grad(losses[k], z, retain_graph=True)[0].reshape(-1) for k in range(3)]
    )
    w = UPGrad().weights(Statistics(losses=losses.detach(), gramian=jac @ jac.T))
    assert torch.allclose(result.weights, w.to(result.weights.dtype), atol=1e-6)
    shared = model.shared_parameters()
    want_shared = torch.autograd.grad(
        z, shared, grad_outputs=(w.to(jac.dtype) @ jac).reshape(z.shape), retain_graph=True
    )
    want_heads = torch.autograd.grad(losses.sum(), model.task_parameters())
    want = {id(p): g for p, g in zip(shared, want_shared)}
    want.update({id(p): g for p, g in zip(model.task_parameters(), want_heads)})
    for p, g in zip(model.parameters(), got):
        assert torch.allclose(g, want[id(p)], rtol=1e-4, atol=1e-6)


def test_state_dict_round_trip_through_safetensors(tmp_path):
    model = _model(hidden=7, seed=0)
    path = tmp_path / "moe.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    fresh = _model(hidden=7, seed=1)
    x = torch.randn(4, 6)
    assert not torch.allclose(fresh(x)["c"], model(x)["c"])
    fresh.load_state_dict(load_file(str(path)))
    for t, y in model(x).items():
        assert torch.equal(fresh(x)[t], y)
    keys = set(model.state_dict())
    assert {"heads.gate.weight", "heads.weight", "heads.hidden_weight"} <= keys
    assert "trunk.experts.2.0.weight" in keys and "trunk.bottom.0.weight" in keys


def test_builders_and_bad_input():
    tasks = [Task("a", "binary"), Task("c", "multiclass", num_classes=3)]
    trunk = moe_trunk(6, (), 2, (4, 3))  # no bottom: h = x
    assert trunk.layout == MoELayout(6, 2, 3) and trunk.out_dim == 12
    heads = build_moe_heads(trunk.layout, tasks)
    assert heads.names == ("a", "c") and heads.widths == (1, 3) and heads.scalar == (True, False)
    x = torch.randn(2, 6)
    z = trunk(x)
    assert torch.equal(z[:, :6], x) and heads(z)["c"].shape == (2, 3)
    with pytest.raises(PolytaskError, match="experts must be >= 1"):
        moe_trunk(6, (5,), 0)
    with pytest.raises(PolytaskError, match="one output width"):
        MoETrunk([nn.Linear(3, 2), nn.Linear(3, 4)], in_dim=3)
    with pytest.raises(PolytaskError, match=r"features must be \[B, 12\]"):
        heads(torch.randn(2, 11))
    with pytest.raises(PolytaskError, match="unknown task 'zz'"):
        heads(z, ["zz"])


@pytest.mark.parametrize("hidden", [None, 3])
def test_task_state_moves_one_tasks_gate_and_tower_between_task_sets(hidden):
    # heads over tasks (a, b, c) → heads over (c, d): task c's gate and tower carry over exactly
    # (what a later stage of `stages:` does with the tasks it shares); d keeps its own init
    first = _model(hidden)
    second = MoEHeads(first.trunk.layout, {"c": 3, "d": 2}, {"c": False, "d": False}, hidden)
    state = first.heads.task_state()
    expected = {"gate.weight", "gate.bias", "weight", "bias"} | (
        {"hidden_weight", "hidden_bias"} if hidden else set()
    )
    assert {k.split(".", 1)[1] for k in state if k.startswith("c.")} == expected
    d_before = {k: v.clone() for k, v in second.task_state().items() if k.startswith("d.")}
    second.load_task_state({k: v for k, v in state.items() if k.startswith("c.")})
    z = first.forward_features(torch.randn(4, 6))
    torch.testing.assert_close(second(z, ["c"])["c"], first.heads(z, ["c"])["c"])
    after = second.task_state()
    assert all(torch.equal(after[k], v) for k, v in d_before.items())
