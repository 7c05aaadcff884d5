"""Build the training objects (model, optimizer, scheduler, loader, balancer) from a config."""

from __future__ import annotations

import math
from typing import Any

import torch

from polytask._core import PolytaskError
from polytask.models import (
    MultiTaskModel,
    adapter_trunk,
    build_adapter_heads,
    build_model,
    build_moe_heads,
    mlp_trunk,
    moe_trunk,
)
from polytask.tasks import TaskSet
from polytask.tasks.data import (
    AllTasksSampler,
    JointLoader,
    PerTaskLoader,
    RoundRobinSampler,
    TemperatureSampler,
    TensorData,
)
from polytask.tasks.ssl import PretextLoader

from .data import PreparedData
from .images import ConvTrunkConfig, ImageData, image_model, sla_loader
from .modal import make_modal_model, mask_loader, modalities_of
from .schedules import schedule_sampler
from .schema import AdaptersTrunkConfig, MoETrunkConfig, PerTaskData, TrainConfig


def make_model(config: TrainConfig, taskset: TaskSet, in_dim: int) -> MultiTaskModel:
    t = config.model.trunk
    if modalities_of(config):  # one encoder per modality, fused
        if isinstance(t, MoETrunkConfig | AdaptersTrunkConfig):
            raise PolytaskError(
                f"model.trunk: key 'kind': {t.kind!r} does not take multi-modal inputs"
            )
        return make_modal_model(config, taskset)
    if isinstance(t, ConvTrunkConfig) or isinstance(config.data, ImageData):
        return image_model(config, taskset, in_dim)
    h = config.model.heads
    if isinstance(t, MoETrunkConfig):  # shared bottom + experts; gates and towers are the heads
        moe = moe_trunk(
            in_dim, t.bottom, t.experts, t.expert_hidden, t.dropout, t.activation, t.batch_norm
        )
        return MultiTaskModel(moe, build_moe_heads(moe.layout, taskset.tasks, h.hidden, h.dropout))
    if isinstance(t, AdaptersTrunkConfig):  # shared layers + per-task adapters; features [B, K, d]
        k = len(taskset)
        ad = adapter_trunk(in_dim, t.hidden, k, t.bottleneck, t.dropout, t.activation, t.batch_norm)
        return MultiTaskModel(
            ad, build_adapter_heads(ad.out_dim, taskset.tasks, h.hidden, h.dropout)
        )
    trunk = mlp_trunk(in_dim, t.hidden, t.dropout, t.activation, t.batch_norm)
    return build_model(trunk, taskset.tasks, t.hidden[-1], h.hidden, h.dropout)


def make_loader(config: TrainConfig, prepared: PreparedData, taskset: TaskSet) -> Any:
    """The training batch stream; auxiliary tasks in ``taskset`` add their pretext groups."""
    base = mask_loader(config, _base_loader(config, prepared, taskset), taskset)
    pretexts = {n: p for n, p in prepared.pretexts.items() if n in taskset.names}
    loader = PretextLoader(base, pretexts, seed=config.seed) if pretexts else base
    return sla_loader(loader, taskset)  # SLA tasks see the 4 rotations of their images


def _base_loader(
    config: TrainConfig, prepared: PreparedData, taskset: TaskSet
) -> JointLoader | PerTaskLoader:
    train = prepared.splits["train"]
    bs = config.train.batch_size
    if isinstance(train, TensorData):
        return JointLoader(train, bs, seed=config.seed)
    datasets = {n: train[n] for n in taskset.names if n not in prepared.pretexts}
    assert isinstance(config.data, PerTaskData)
    s = config.data.sampler
    sizes = [len(d) for d in datasets.values()]
    samplers: dict[str, Any] = {
        "proportional": lambda: TemperatureSampler.proportional(sizes, config.seed),
        "temperature": lambda: TemperatureSampler(tuple(sizes), s.temperature, config.seed),
        "uniform": lambda: TemperatureSampler.uniform(sizes, config.seed),
        "round_robin": lambda: RoundRobinSampler(len(sizes)),
        "all": lambda: AllTasksSampler(len(sizes)),
        "anti_curriculum": lambda: schedule_sampler(config, s, list(datasets), sizes),
        "high_resource_first": lambda: schedule_sampler(config, s, list(datasets), sizes),
    }
    return PerTaskLoader(datasets, bs, samplers[s.kind](), seed=config.seed)


def max_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    t = config.train
    return t.steps if t.steps is not None else int(t.epochs or 1) * steps_per_epoch


def make_balancer(config: TrainConfig, num_tasks: int) -> Any:
    """The configured balancing method, or None for the plain summed loss."""
    if config.balancing is None:
        return None
    from polytask.config.balancing import BalancingConfig, build_balancer

    from .load import validate

    cfg = validate(BalancingConfig, dict(config.balancing), "balancing")
    if num_tasks < 2 and cfg.method != "ew":
        raise PolytaskError(
            f"balancing: method {cfg.method!r} needs at least 2 tasks, got {num_tasks}"
        )
    return build_balancer(cfg, n_tasks=num_tasks)


def make_optimizer(config: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    o = config.train.optimizer
    optimizers: dict[str, Any] = {
        "adamw": lambda: torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay),
        "adam": lambda: torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay),
        "sgd": lambda: torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
        ),
    }
    optimizer: torch.optim.Optimizer = optimizers[o.name]()
    return optimizer


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    s = config.train.scheduler
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
