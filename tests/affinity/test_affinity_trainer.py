"""End to end: the polytask Trainer feeds GradientAffinity through its callback hook."""

from __future__ import annotations

import torch

from polytask.affinity import GradientAffinity, choose_groups
from polytask.balancing import Balancer, UPGrad
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, TensorData
from polytask.train import Trainer


def test_trainer_callback_recovers_related_tasks() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    shared_a = x[:, :4].sum(1)
    shared_b = x[:, 4:].sum(1)
    y = {
        "a1": shared_a + 0.1 * torch.randn(256, generator=g),
        "b1": shared_b + 0.1 * torch.randn(256, generator=g),
        "a2": shared_a + 0.1 * torch.randn(256, generator=g),
        "b2": shared_b + 0.1 * torch.randn(256, generator=g),
    }
    ts = TaskSet([Task(n, "regression") for n in y])
    torch.manual_seed(0)
    model = build_model(mlp_trunk(8, (16,)), ts.tasks, 16)
    with torch.no_grad():  # equal heads at the start: the trunk gradients then reflect the data
        model.heads.linear.weight.copy_(model.heads.linear.weight[:1].expand(4, -1))
        model.heads.linear.bias.zero_()
    affinity = GradientAffinity(rate=0.2)
    trainer = Trainer(
        model,
        ts,
        JointLoader(TensorData(x, y), 64),
        torch.optim.SGD(model.parameters(), lr=0.02),
        max_steps=12,
        balancer=Balancer(UPGrad()),
        callbacks=[affinity],
        progress=False,
    )
    trainer.fit()
    assert affinity.steps == 12 and affinity.skipped_steps == 0
    assert affinity.task_names == ("a1", "b1", "a2", "b2")
    c = affinity.matrix()
    assert torch.allclose(c, c.T) and torch.allclose(
        torch.diagonal(c), torch.ones(4, dtype=torch.float64)
    )
    assert c[0, 2] > 0.9 and c[1, 3] > 0.9  # same target function, own noise
    assert max(c[0, 1], c[0, 3], c[2, 1], c[2, 3]) < 0.5
    assert choose_groups(c, 2, affinity.task_names).named() == [["a1", "a2"], ["b1", "b2"]]
