"""Build the training loader: per-task or joint data, the task sampler (including the scheduled
ones), pretext groups, modality masking and SLA rotations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from polytask._core import PolytaskError
from polytask.config.modal import modalities_of
from polytask.config.schema import PerTaskData, SamplerConfig, TrainConfig
from polytask.tasks import TaskSet
from polytask.tasks.data import (
    AllTasksSampler,
    AntiCurriculumSampler,
    HighResourceFirstSampler,
    JointLoader,
    PerTaskLoader,
    RoundRobinSampler,
    TemperatureSampler,
    TensorData,
)
from polytask.tasks.ssl import PretextLoader, SLALoader, SLATask
from polytask.tasks.ssl.modality_mask import ModalityMaskLoader

from .data import PreparedData


def budget_steps(config: TrainConfig, sizes: Sequence[int]) -> int:
    """The run's step budget, as :class:`PerTaskLoader` counts epochs (all rows / batch size)."""
    t = config.train
    if t.steps is not None:
        return t.steps
    per_epoch = max(math.ceil(sum(sizes) / t.batch_size), 1)
    return int(t.epochs or 1) * per_epoch


def schedule_sampler(
    config: TrainConfig, s: SamplerConfig, names: Sequence[str], sizes: Sequence[int]
) -> Any:
    """The sampler of ``s.kind`` (``anti_curriculum`` or ``high_resource_first``)."""
    total = budget_steps(config, sizes)
    if s.kind == "high_resource_first":
        return HighResourceFirstSampler(
            tuple(sizes), total, s.switch, s.high_fraction, s.temperature, config.seed
        )
    order = s.order
    if order is None:
        raise PolytaskError(
            "data.sampler.order: the anti_curriculum sampler needs the tasks ranked hardest first"
        )
    unknown = [n for n in order if n not in names]
    missing = [n for n in names if n not in order]
    if unknown or missing or len(set(order)) != len(order):
        raise PolytaskError(
            f"data.sampler.order: must list every task once (unknown {unknown}, missing {missing})"
        )
    ranking = tuple(list(names).index(n) for n in order)
    return AntiCurriculumSampler(ranking, total, s.ramp, config.seed)


def sla_loader(loader: Any, taskset: TaskSet) -> Any:
    """``loader`` whose batches for an :class:`SLATask` hold the 4 rotations of each image."""
    for t in taskset.tasks:
        if isinstance(t, SLATask):
            loader = SLALoader(loader, t.name)
    return loader


def mask_loader(config: Any, loader: Any, taskset: TaskSet) -> Any:
    """``loader`` with modality masking when ``multimodal.masking`` is set."""
    mm = getattr(config, "multimodal", None)
    if mm is None or mm.masking is None:
        return loader
    rec = {t: m for t, m in mm.masking.reconstruct.items() if t in taskset.names}
    mods = tuple(modalities_of(config))
    return ModalityMaskLoader(loader, mods, mm.masking.p, config.seed, rec)


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
