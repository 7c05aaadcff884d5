"""Muppet: loss scaling by 1 / log(#classes) (pinned) and heterogeneous batches."""

from __future__ import annotations

import math

import pytest
import torch

from polytask.build.data import make_task, prepare_data
from polytask.build.loaders import make_loader
from polytask.build.model import make_model
from polytask.config.load import load_config
from polytask.config.loss_scale import log_classes_factor
from polytask.config.schema import TaskConfig, TrainConfig
from polytask.config.stages import scaled_tasks
from polytask.tasks import TaskSet
from polytask.tasks.data import Group
from polytask.train.step import compute_losses

from .test_schedules import per_task_config


@pytest.mark.parametrize(
    ("kind", "classes", "factor"),
    [
        ("binary", 1, 1.4426950408889634),  # 1 / ln 2
        ("multilabel", 5, 1.4426950408889634),  # each label is binary
        ("multiclass", 3, 0.9102392266268373),  # 1 / ln 3
        ("multiclass", 10, 0.43429448190325176),  # 1 / ln 10
        ("regression", 1, 1.0),  # not a cross-entropy: no scaling
        ("reconstruction", 16, 1.0),
    ],
)
def test_log_classes_factor_pinned(kind, classes, factor):
    assert log_classes_factor(kind, classes) == factor


def test_scaled_losses_at_chance_are_one_for_every_class_count():
    """At chance a C-class cross-entropy is ln C; divided by ln C it is 1 (Muppet's point)."""
    tasks = scaled_tasks(
        [
            TaskConfig(name="b", kind="binary"),
            TaskConfig(name="m", kind="multiclass", num_classes=10),
            TaskConfig(name="r", kind="regression", weight=0.5),
        ]
    )
    taskset = TaskSet(make_task(t) for t in tasks)

    class Zero(torch.nn.Module):  # trunk and heads that predict chance: all logits 0
        def forward_features(self, x):
            return x

        def forward_heads(self, z, names):
            out = {"b": torch.zeros(4), "m": torch.zeros(4, 10), "r": torch.zeros(4)}
            return {n: out[n] for n in names}

    targets = {
        "b": torch.tensor([0.0, 1, 1, 0]),
        "m": torch.tensor([0.0, 3, 9, 5]),
        "r": torch.full((4,), 2.0),
    }
    losses, _, _ = compute_losses(Zero(), [Group(torch.zeros(4, 2), targets)], taskset)  # type: ignore[arg-type]
    b, m, r = (losses[taskset.index(n)].item() for n in ("b", "m", "r"))
    assert b == pytest.approx(1.0, abs=1e-7)
    assert m == pytest.approx(1.0, abs=1e-7)
    assert r == 0.5 * 4.0  # regression: only its own weight (MSE of 2 is 4)


def test_heterogeneous_batches_mix_every_task_in_every_step(tmp_path):
    path = per_task_config(tmp_path, {"kind": "all"})
    config = load_config(TrainConfig, path)
    prepared = prepare_data(config, path.parent)
    loader = make_loader(
        config.train, config.data, config.multimodal, config.seed, prepared, prepared.taskset
    )
    for step in range(5):
        batch = loader.batch(step)
        assert [list(g.targets) for g in batch] == [["big"], ["mid"], ["small"]]
    model = make_model(
        config.model, config.data, config.multimodal, prepared.taskset, prepared.in_dim
    )
    losses, counts, features = compute_losses(model, loader.batch(5), prepared.taskset)
    assert prepared.taskset.names == ("big", "mid", "small") and len(features) == 3
    assert losses.shape == (3,) and bool((counts > 0).all())
    assert math.isfinite(losses.sum().item())
