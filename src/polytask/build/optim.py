"""Build the optimizer and the learning-rate schedule of a training config."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from polytask.config.schema import OptimizerConfig, SchedulerConfig


def make_optimizer(
    spec: OptimizerConfig, params: list[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """The optimizer ``spec`` names, over ``params``."""
    o = spec
    optimizers: dict[str, Callable[[], torch.optim.Optimizer]] = {
        "adamw": lambda: torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay),
        "adam": lambda: torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay),
        "sgd": lambda: torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        ),
    }
    return optimizers[o.name]()


def make_scheduler(
    spec: SchedulerConfig, optimizer: torch.optim.Optimizer, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over ``spec.warmup_steps``, then ``spec.name`` over the rest of ``total``."""
    s = spec
    warm = s.warmup_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(total - warm, 1)
        shapes = {
            "constant": 1.0,
            "cosine": 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))),
            "linear": max(1.0 - progress, 0.0),
        }
        return shapes[s.name]

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
