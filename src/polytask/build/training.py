"""Everything one training run needs besides its data, built in the order the RNG draws fix.

:func:`make_training_parts` seeds the RNGs from the config, then builds the model (and runs
``init`` on it, e.g. to load an earlier stage's weights), the balancer, the optimizer over both
and the training loader. The training job and the affinity job build their runs through it, so
the same config gives them the same initial weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from polytask._core import resolve_device, seed_everything
from polytask.balancing import Balancer
from polytask.config.schema import TrainConfig
from polytask.models import MultiTaskModel
from polytask.tasks.ssl.loader import BaseLoader

from .balancing import make_balancer
from .loaders import make_loader
from .model import make_model
from .optim import make_optimizer
from .prepared import PreparedData

Init = Callable[[MultiTaskModel], None]


@dataclass(frozen=True)
class TrainingParts:
    """The model, the balancer (None: the plain summed loss), the optimizer, the loader and the
    device the model was moved to (None: left where it was built)."""

    model: MultiTaskModel
    balancer: Balancer | None
    optimizer: torch.optim.Optimizer
    loader: BaseLoader
    device: torch.device | None


def make_training_parts(
    config: TrainConfig,
    prepared: PreparedData,
    *,
    on_device: bool = False,
    init: Init | None = None,
) -> TrainingParts:
    """Seed, then build the model, balancer, optimizer and loader; with ``on_device``, the
    model and balancer are moved to ``config.device``."""
    seed_everything(config.seed, config.train.deterministic)
    taskset = prepared.taskset
    model = make_model(config.model, config.data, config.multimodal, taskset, prepared.in_dim)
    if init is not None:  # e.g. weights carried over from an earlier stage
        init(model)
    device = resolve_device(config.device) if on_device else None
    if device is not None:
        model.to(device)
    balancer = make_balancer(config.balancing, len(taskset))
    params = list(model.parameters())
    if balancer is not None:
        if device is not None:
            balancer.to(device)
        params += list(balancer.parameters())
    optimizer = make_optimizer(config.train.optimizer, params)
    loader = make_loader(
        config.train, config.data, config.multimodal, config.seed, prepared, taskset
    )
    return TrainingParts(model, balancer, optimizer, loader, device)
