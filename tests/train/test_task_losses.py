"""compute_losses: one stacked loss per (kind, loss) equals the per-task path, in task order."""

import dataclasses
import math

import pytest
import torch

from polytask._core import PolytaskError
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import (
    TOX21_TASKS,
    Group,
    JointLoader,
    PerTaskLoader,
    RoundRobinSampler,
    TensorData,
    ecfp,
    load_tox21,
)
from polytask.train import compute_losses, train_step
from polytask.train.task_losses import stacked_heads
from tests.conftest import needs

NAN = math.nan


def _reference(model, group, taskset):
    """The per-task path: every task's own masked loss on its own head output, weight applied."""
    out = model(group.inputs)
    return torch.stack(
        [taskset[n].compute_loss(out[n], group.targets[n]) * taskset[n].weight for n in taskset]
    )


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.fixture(scope="module")
def tox21_slice():
    needs("rdkit")
    smiles, labels = load_tox21()
    rows = slice(0, 256)
    x = torch.tensor(ecfp(smiles[rows], n_bits=256), dtype=torch.float32)
    return TensorData(x, {t: torch.tensor(labels[t][rows]) for t in TOX21_TASKS})


def test_stacked_equals_per_task_on_a_real_tox21_slice(tox21_slice):
    ts = TaskSet([Task(t, "binary") for t in TOX21_TASKS])
    torch.manual_seed(0)
    model = build_model(mlp_trunk(256, (64,)), ts.tasks, 64)
    assert stacked_heads(model) is model.heads
    loader = JointLoader(tox21_slice, batch_size=64, seed=1)
    for step in range(4):
        (group,) = loader.batch(step)
        losses, counts, features = compute_losses(model, [group], ts)
        expected = _reference(model, group, ts)
        assert torch.allclose(losses, expected, atol=1e-6, rtol=0)
        assert counts.tolist() == [int((~torch.isnan(group.targets[t])).sum()) for t in ts]
        assert len(features) == 1 and features[0].shape == (64, 64)
        for a, b in zip(_grads(model, losses.sum()), _grads(model, expected.sum())):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def _mixed():
    tasks = [
        Task("b1", "binary"), Task("m", "multiclass", num_classes=3), Task("r1", "regression"),
        Task("b2", "binary", weight=0.25), Task("ml", "multilabel", num_classes=2),
        Task("r2", "regression"), Task("h1", "regression", loss="huber"), Task("b3", "binary"),
    ]  # fmt: skip
    g = torch.Generator().manual_seed(0)
    n = 12
    y = {
        "b1": (torch.rand(n, generator=g) < 0.5).float(),
        "m": torch.randint(0, 3, (n,), generator=g).float(),
        "r1": torch.randn(n, generator=g),
        "b2": torch.full((n,), NAN),  # no label at all
        "ml": (torch.rand(n, 2, generator=g) < 0.5).float(),
        "r2": torch.full((n,), 2.5),  # constant label
        "h1": torch.randn(n, generator=g) * 3,  # alone in its loss: per-task path
        "b3": torch.full((n,), NAN),
    }
    y["b1"][::2] = NAN
    y["b3"][5] = 1.0  # a single label
    y["ml"][:4] = NAN
    return TaskSet(tasks), TensorData(torch.randn(n, 5, generator=g), y)


def test_mixed_kinds_weights_and_degenerate_columns_equal_the_per_task_path():
    ts, data = _mixed()
    torch.manual_seed(1)
    model = build_model(mlp_trunk(5, (8,)), ts.tasks, 8)
    for group in (Group(data.inputs, data.targets), JointLoader(data, 12).batch(0)[0]):
        losses, counts, _ = compute_losses(model, [group], ts)
        expected = _reference(model, group, ts)
        assert torch.allclose(losses, expected, atol=1e-6, rtol=0)
        assert losses[ts.index("b2")].item() == 0.0 and losses.requires_grad
        assert counts.tolist() == [6, 12, 12, 0, 8, 12, 12, 1]
        for a, b in zip(_grads(model, losses.sum()), _grads(model, expected.sum())):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_task_weights_follow_each_task_set_object():
    ts, data = _mixed()
    model = build_model(mlp_trunk(5, (8,)), ts.tasks, 8)
    group = Group(data.inputs, data.targets)
    base = compute_losses(model, [group], ts).losses
    doubled = TaskSet(dataclasses.replace(t, weight=2 * t.weight) for t in ts.tasks)
    again = compute_losses(model, [group], doubled).losses
    assert torch.allclose(again, 2 * base, atol=1e-6, rtol=0)
    assert torch.equal(compute_losses(model, [group], ts).losses, base)


def test_mlp_heads_take_the_per_task_path_with_the_same_values():
    ts, data = _mixed()
    model = build_model(mlp_trunk(5, (8,)), ts.tasks, 8, head_hidden=4)
    assert stacked_heads(model) is None
    group = Group(data.inputs, data.targets)
    losses, counts, _ = compute_losses(model, [group], ts)
    assert torch.equal(losses, _reference(model, group, ts))
    assert counts.tolist() == [6, 12, 12, 0, 8, 12, 12, 1]


def _round_robin(ts: TaskSet) -> PerTaskLoader:
    """One 6-row dataset per task (5 labels each), one task per step in turn."""
    g = torch.Generator().manual_seed(0)
    datasets = {
        n: TensorData(torch.randn(6, 3, generator=g), {n: torch.tensor([1.0, 0, 1, NAN, 0, 1])})
        for n in ts
    }
    return PerTaskLoader(datasets, batch_size=6, sampler=RoundRobinSampler(len(ts)))


def test_tasks_not_fed_are_constant_zero_with_count_zero():
    ts = TaskSet([Task("a", "binary"), Task("b", "binary"), Task("c", "regression")])
    loader = _round_robin(ts)
    model = build_model(mlp_trunk(3, (4,)), ts.tasks, 4)
    batch = loader.batch(0) + loader.batch(2)  # tasks a and c, two groups
    losses, counts, features = compute_losses(model, batch, ts)
    ref_a = ts["a"].compute_loss(model(batch[0].inputs)["a"], batch[0].targets["a"])
    ref_c = ts["c"].compute_loss(model(batch[1].inputs)["c"], batch[1].targets["c"])
    assert losses.tolist() == pytest.approx([ref_a.item(), 0.0, ref_c.item()], abs=1e-7)
    assert counts.tolist() == [5, 0, 5] and len(features) == 2


def test_empty_rows_duplicate_tasks_and_empty_batches():
    ts = TaskSet([Task("a", "binary"), Task("b", "binary")])
    model = build_model(mlp_trunk(3, (4,)), ts.tasks, 4)
    empty = Group(torch.zeros(0, 3), {"a": torch.zeros(0), "b": torch.zeros(0)})
    losses, counts, _ = compute_losses(model, [empty], ts)
    assert losses.tolist() == [0.0, 0.0] and counts.tolist() == [0, 0] and losses.requires_grad
    one = Group(torch.zeros(2, 3), {"a": torch.ones(2)})
    with pytest.raises(PolytaskError, match="task 'a' is fed by more than one group"):
        compute_losses(model, [one, one], ts)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(PolytaskError, match="step 4: the batch carries targets for none"):
        train_step(model, [], ts, opt, step=4)
    with pytest.raises(PolytaskError, match="none of the tasks"):
        train_step(model, [Group(torch.zeros(2, 3), {"zz": torch.ones(2)})], ts, opt)


def test_train_step_reports_present_counts_in_task_order():
    ts, data = _mixed()
    model = build_model(mlp_trunk(5, (8,)), ts.tasks, 8)
    out = train_step(
        model, [Group(data.inputs, data.targets)], ts, torch.optim.SGD(model.parameters(), 0.1)
    )
    assert out.present == [6, 12, 12, 0, 8, 12, 12, 1]
    assert list(out.losses) == list(ts.names) and out.losses["b2"] == 0.0
    assert out.total == pytest.approx(sum(out.losses.values()))
    assert out.shared_grad_norm > 0 and not out.zero_update


def test_a_per_task_sampler_keeps_famo_state_over_every_task():
    # one task per step: FAMO sees all K losses (the others absent), so its state keeps size K
    # and a task's logit only moves at steps where it is fed twice in a row (never here)
    from polytask.balancing import FAMO, Balancer

    ts = TaskSet([Task("a", "binary"), Task("b", "binary"), Task("c", "binary")])
    loader = _round_robin(ts)
    torch.manual_seed(0)
    model = build_model(mlp_trunk(3, (4,)), ts.tasks, 4)
    famo = FAMO()
    bal = Balancer(famo)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(6):
        out = train_step(model, loader.batch(step), ts, opt, balancer=bal, step=step)
        fed = step % 3
        assert out.weights[fed] == pytest.approx(1.0) and sum(out.weights) == pytest.approx(1.0)
        assert famo.logits.shape == (3,) and out.present[fed] == 5
    assert famo.logits.tolist() == [0.0, 0.0, 0.0] and famo.adam_steps.tolist() == [0.0] * 3
