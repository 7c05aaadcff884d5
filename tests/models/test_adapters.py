"""Per-task residual adapters (polytask.models.adapters): hand values, zero init, the per-task
loop reference, gradient ownership, shared parameters, exact balancing, heads state."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from polytask._core import PolytaskError
from polytask.balancing import Balancer, Statistics, UPGrad
from polytask.models import (
    AdapterHeads,
    AdapterTrunk,
    MultiTaskModel,
    TaskHeads,
    adapter_trunk,
    build_adapter_heads,
    mlp_trunk,
)
from polytask.tasks import Task

OUT = {"a": 1, "b": 1, "c": 3}
SCALAR = {"a": True, "b": True, "c": False}


def _randomise_adapters(trunk: AdapterTrunk, seed: int = 3) -> None:
    """Non-zero ``U``/``e`` (and non-trivial norms) so that the task streams differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for ad in trunk.adapters:
            ad.up_weight.copy_(0.5 * torch.randn(ad.up_weight.shape, generator=g))
            ad.up_bias.copy_(0.5 * torch.randn(ad.up_bias.shape, generator=g))
        for norm in trunk.norms:
            norm.norm.weight.copy_(1 + 0.3 * torch.randn(norm.norm.weight.shape, generator=g))
            norm.norm.bias.copy_(0.3 * torch.randn(norm.norm.bias.shape, generator=g))


def _model(hidden: int | None = None, batch_norm: bool = True, seed: int = 0) -> MultiTaskModel:
    torch.manual_seed(seed)
    trunk = adapter_trunk(6, (5, 4), 3, bottleneck=2, activation="tanh", batch_norm=batch_norm)
    _randomise_adapters(trunk, seed + 3)
    return MultiTaskModel(trunk, AdapterHeads(4, OUT, SCALAR, hidden=hidden))


def _losses(model: MultiTaskModel, x: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    ya, yb = torch.randn(len(x), generator=g), torch.randn(len(x), generator=g)
    yc = torch.randint(0, 3, (len(x),), generator=g)
    out = model(x)
    return torch.stack(
        [F.mse_loss(out["a"], ya), F.mse_loss(out["b"], yb), F.cross_entropy(out["c"], yc)]
    )


def test_hand_computed_two_layers_two_tasks():
    # d = 2, r = 1, relu, no norm. Layer 1: W1 = I, b1 = 0; x = (1, -2) -> a1 = relu(x) = (1, 0)
    trunk = AdapterTrunk(2, [2, 2], num_tasks=2, bottleneck=1)
    l1, l2 = trunk.layers
    ad1, ad2 = trunk.adapters
    with torch.no_grad():
        l1.weight.copy_(torch.eye(2)), l1.bias.zero_()
        l2.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]])), l2.bias.zero_()
        # task 0: D = (1, 1), c = 0 -> relu(1) = 1; U = (2, 3), e = (0, 0.5) -> h = (3, 3.5)
        # task 1: D = (-1, 0), c = 0.5 -> relu(-0.5) = 0; e = (0.25, 0) -> h = (1.25, 0)
        ad1.down_weight.copy_(torch.tensor([[[1.0, 1.0]], [[-1.0, 0.0]]]))
        ad1.down_bias.copy_(torch.tensor([[0.0], [0.5]]))
        ad1.up_weight.copy_(torch.tensor([[[2.0], [3.0]], [[7.0], [7.0]]]))
        ad1.up_bias.copy_(torch.tensor([[0.0, 0.5], [0.25, 0.0]]))
        # layer 2 (shared W2 on each stream): a2 = relu(W2 h) -> task 0 (6.5, 3.5), task 1 (1.25, 0)
        # task 0 adapter silent (U = 0, e = 0); task 1: D = (1, 0) -> 1.25, U = (1, -1)
        ad2.down_weight.copy_(torch.tensor([[[1.0, 1.0]], [[1.0, 0.0]]]))
        ad2.down_bias.zero_()
        ad2.up_weight.copy_(torch.tensor([[[0.0], [0.0]], [[1.0], [-1.0]]]))
        ad2.up_bias.zero_()
    f = trunk(torch.tensor([[1.0, -2.0]]))
    assert f.shape == (1, 2, 2)
    assert torch.allclose(f, torch.tensor([[[6.5, 3.5], [2.5, -1.25]]]))
    # heads: task a scalar, (1, 1) · f_a + 0.5 = 10.5; task b width 2: I f_b + (0, 1)
    heads = AdapterHeads(2, {"a": 1, "b": 2}, {"a": True, "b": False})
    with torch.no_grad():
        heads.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]))
        heads.bias.copy_(torch.tensor([0.5, 0.0, 1.0]))
    out = heads(f)
    assert out["a"].shape == (1,) and out["a"].item() == pytest.approx(10.5)
    assert torch.allclose(out["b"], torch.tensor([[2.5, -0.25]]))
    # all-scalar (batched) path: y_a = (1, 1) · f_a, y_b = (2, -1) · f_b + 1 = 7.25
    scalar = AdapterHeads(2, {"a": 1, "b": 1}, {"a": True, "b": True})
    with torch.no_grad():
        scalar.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, -1.0]]))
        scalar.bias.copy_(torch.tensor([0.0, 1.0]))
    out = scalar(f, ["b", "a"])
    assert list(out) == ["b", "a"]
    assert out["a"].item() == pytest.approx(10.0) and out["b"].item() == pytest.approx(7.25)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_zero_init_every_task_equals_the_plain_shared_trunk(batch_norm):
    torch.manual_seed(0)
    trunk = adapter_trunk(6, (5, 4), 3, bottleneck=2, batch_norm=batch_norm)
    plain = mlp_trunk(6, (5, 4), batch_norm=batch_norm)
    linears = [m for m in plain if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for mine, theirs in zip(trunk.layers, linears):
            theirs.load_state_dict(mine.state_dict())
    x = torch.randn(8, 6)
    for mode in ("train", "eval"):  # train mode also moves the running statistics of both
        trunk.train(mode == "train"), plain.train(mode == "train")
        f, ref = trunk(x), plain(x)
        for k in range(3):
            assert torch.allclose(f[:, k], ref, atol=1e-6)


def test_dropout_mask_is_shared_by_the_task_streams():
    torch.manual_seed(0)
    trunk = adapter_trunk(6, (50, 40), 3, bottleneck=2, dropout=0.5)  # U = 0: streams equal
    x = torch.randn(8, 6)
    f = trunk(x)
    assert torch.equal(f[:, 0], f[:, 1]) and torch.equal(f[:, 0], f[:, 2])
    assert (f == 0).float().mean() > 0.5  # about half dropped after the relu's zeros
    trunk.eval()
    g = trunk(x)
    assert not torch.allclose(f, g) and (g == 0).float().mean() < (f == 0).float().mean()


def _loop_reference(trunk: AdapterTrunk, x: torch.Tensor) -> torch.Tensor:
    """Task by task: shared Linear, task k's batch norm (batch statistics), tanh, task k's adapter."""
    streams = []
    for k in range(trunk.num_tasks):
        h = x
        for i, (linear, ad) in enumerate(zip(trunk.layers, trunk.adapters)):
            z = linear(h)
            if len(trunk.norms):
                bn = trunk.norms[i].norm
                d = z.shape[1]
                cols = slice(k * d, (k + 1) * d)
                z = F.batch_norm(z, None, None, bn.weight[cols], bn.bias[cols], True, 0.0, bn.eps)
            a = torch.tanh(z)
            u = torch.tanh(a @ ad.down_weight[k].T + ad.down_bias[k])
            h = a + u @ ad.up_weight[k].T + ad.up_bias[k]
        streams.append(h)
    return torch.stack(streams, dim=1)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vectorised_forward_equals_a_per_task_loop(batch_norm):
    model = _model(batch_norm=batch_norm)
    trunk = model.trunk
    assert isinstance(trunk, AdapterTrunk)
    x = torch.randn(7, 6)
    f = trunk(x)
    want = _loop_reference(trunk, x)
    assert f.shape == (7, 3, 4)
    assert torch.allclose(f, want, atol=1e-5)
    assert not torch.allclose(f[:, 0], f[:, 1], atol=1e-3)  # the streams really differ


@pytest.mark.parametrize("hidden", [None, 7])
def test_one_tasks_loss_leaves_the_other_tasks_adapters_norms_and_heads_untouched(hidden):
    model = _model(hidden)
    trunk, heads = model.trunk, model.heads
    assert isinstance(trunk, AdapterTrunk) and isinstance(heads, AdapterHeads)
    x = torch.randn(8, 6)
    rows = {"a": slice(0, 1), "b": slice(1, 2), "c": slice(2, 5)}
    for k, task in enumerate(OUT):
        model.zero_grad()
        (model(x)[task] ** 2).sum().backward()
        for j, other in enumerate(OUT):
            own = j == k
            for ad in trunk.adapters:
                for p in (ad.down_weight, ad.down_bias, ad.up_weight, ad.up_bias):
                    assert p.grad is not None and (p.grad[j].abs().sum() > 0) == own
            for norm in trunk.norms:
                d = norm.norm.num_features // 3
                g = norm.norm.weight.grad
                assert g is not None and (g[j * d : (j + 1) * d].abs().sum() > 0) == own
            assert (heads.weight.grad[rows[other]].abs().sum() > 0) == own
            if hidden is not None:
                assert (heads.hidden_weight.grad[j].abs().sum() > 0) == own
        for p in model.shared_parameters():  # the shared layers learn from every task
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_shared_parameters_are_the_shared_linears_only():
    model = _model(hidden=7)
    trunk = model.trunk
    assert isinstance(trunk, AdapterTrunk)
    shared = {id(p) for p in model.shared_parameters()}
    assert shared == {id(p) for layer in trunk.layers for p in layer.parameters()}
    task = {id(p) for p in model.task_parameters()}
    adapters_and_norms = {id(p) for m in (trunk.adapters, trunk.norms) for p in m.parameters()}
    assert task == adapters_and_norms | {id(p) for p in model.heads.parameters()}
    assert not shared & task and shared | task == {id(p) for p in model.parameters()}
    # a plain trunk keeps every parameter shared
    plain = MultiTaskModel(mlp_trunk(6, (5,)), AdapterHeads(5, {"a": 1}, {"a": True}))
    assert len(plain.shared_parameters()) == 2 and len(plain.task_parameters()) == 2


def test_exact_upgrad_gramian_is_over_the_shared_layers_and_adapters_get_plain_gradients():
    model = _model(hidden=7)
    x = torch.randn(10, 6)
    result = Balancer(UPGrad(), mode="exact").backward(_losses(model, x), model.shared_parameters())
    got = {id(p): p.grad.clone() for p in model.parameters()}
    model.zero_grad()
    losses = _losses(model, x)
    shared = model.shared_parameters()
    rows = []
    for k in range(3):
        grads = torch.autograd.grad(losses[k], shared, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jac = torch.stack(rows)  # [3, n_shared]: 2 layers (6·5 + 5) + (5·4 + 4) = 59 columns
    assert jac.shape == (3, 59)
    assert result.gramian is not None
    assert torch.allclose(result.gramian.to(jac.dtype), jac @ jac.T, rtol=1e-4, atol=1e-7)
    w = UPGrad().weights(Statistics(losses=losses.detach(), gramian=jac @ jac.T))
    assert torch.allclose(result.weights, w.to(result.weights.dtype), atol=1e-5)
    update = (w.to(jac.dtype) @ jac).split([p.numel() for p in shared])
    for p, u in zip(shared, update):
        assert torch.allclose(got[id(p)], u.reshape(p.shape), rtol=1e-4, atol=1e-6)
    task = model.task_parameters()
    plain = torch.autograd.grad(losses.sum(), task)
    for p, g in zip(task, plain):
        assert torch.allclose(got[id(p)], g, rtol=1e-4, atol=1e-6)
    ad = model.trunk.adapters[1]
    assert got[id(ad.up_weight)].abs().sum() > 0 and got[id(ad.down_weight)].abs().sum() > 0


def test_heads_task_state_round_trip_and_protocol():
    src, dst = _model(hidden=7, seed=0).heads, _model(hidden=7, seed=1).heads
    assert isinstance(src, AdapterHeads) and isinstance(dst, AdapterHeads)
    assert isinstance(src, TaskHeads)
    state = src.task_state()
    assert state["c.weight"].shape == (3, 7) and state["b.hidden_weight"].shape == (7, 4)
    dst.load_task_state({k: v for k, v in state.items() if k.startswith("c.")})
    f = torch.randn(5, 3, 4)
    src.eval(), dst.eval()
    assert torch.equal(dst(f)["c"], src(f)["c"])
    assert not torch.allclose(dst(f)["a"], src(f)["a"])


def test_state_dict_round_trip_through_safetensors(tmp_path):
    model = _model(hidden=7, seed=0)
    path = tmp_path / "adapters.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    fresh = _model(hidden=7, seed=1)
    model.eval(), fresh.eval()
    x = torch.randn(4, 6)
    fresh.load_state_dict(load_file(str(path)))
    for t, y in model(x).items():
        assert torch.equal(fresh(x)[t], y)
    keys = set(model.state_dict())
    assert {"trunk.adapters.1.up_weight", "trunk.norms.0.norm.running_mean"} <= keys


def test_builders_and_bad_input():
    tasks = [Task("a", "binary"), Task("c", "multiclass", num_classes=3)]
    heads = build_adapter_heads(4, tasks)
    assert heads.names == ("a", "c") and heads.widths == (1, 3) and heads.scalar == (True, False)
    with pytest.raises(PolytaskError, match=r"features must be \[B, 2, 4\]"):
        heads(torch.zeros(3, 4))
    with pytest.raises(PolytaskError, match="unknown task 'x'"):
        heads(torch.zeros(3, 2, 4), ["x"])
    with pytest.raises(PolytaskError, match="bottleneck must be >= 1"):
        adapter_trunk(4, (3,), 2, bottleneck=0)
    with pytest.raises(PolytaskError, match="unknown activation 'swish'"):
        adapter_trunk(4, (3,), 2, activation="swish")
    with pytest.raises(PolytaskError, match="hidden width must be >= 1"):
        adapter_trunk(4, (), 2)
    with pytest.raises(PolytaskError, match=r"dropout must be in \[0, 1\)"):
        adapter_trunk(4, (3,), 2, dropout=1.0)


def test_affinity_probe_uses_the_shared_layers_not_the_per_task_features():
    from polytask.affinity.probe import GradientProbe
    from polytask.tasks import TaskSet
    from polytask.tasks.data import Group

    torch.manual_seed(0)
    trunk = adapter_trunk(6, (5, 4), 2, bottleneck=2, activation="tanh")
    _randomise_adapters(trunk)
    model = MultiTaskModel(trunk, AdapterHeads(4, {"a": 1, "b": 1}, {"a": True, "b": True}))
    plain = MultiTaskModel(mlp_trunk(6, (5,)), AdapterHeads(5, {"a": 1}, {"a": True}))
    assert not model.features_shared and plain.features_shared
    ts = TaskSet([Task("a", "regression"), Task("b", "regression")])
    g = torch.Generator().manual_seed(2)
    x, ya, yb = torch.randn(6, 6, generator=g), torch.randn(6, generator=g), torch.randn(6)
    probe = GradientProbe(model, ts, None)  # type: ignore[arg-type]
    gramian, names = probe.gramian([Group(x, {"a": ya, "b": yb})])
    assert probe.mode == "parameters" and names == ("a", "b")
    model.eval()
    out = model(x)
    rows = []
    for loss in (F.mse_loss(out["a"], ya), F.mse_loss(out["b"], yb)):
        grads = torch.autograd.grad(loss, model.shared_parameters(), retain_graph=True)
        rows.append(torch.cat([t.reshape(-1) for t in grads]).double())
    jac = torch.stack(rows)
    assert torch.allclose(gramian, jac @ jac.T, rtol=1e-5, atol=1e-9)
    assert gramian[0, 1].abs() > 0  # the tasks meet in the shared layers
