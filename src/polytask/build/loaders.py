"""Build the training loader: per-task or joint data, the task sampler (including the scheduled
ones), pretext groups, modality masking and SLA rotations."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from polytask._core import PolytaskError
from polytask.config.modal import MultiModalConfig
from polytask.config.schema import DataConfig, PerTaskData, SamplerConfig, TrainSection
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
from polytask.tasks.data.loaders import Sampler
from polytask.tasks.ssl import PretextLoader, SLALoader, SLATask
from polytask.tasks.ssl.loader import BaseLoader
from polytask.tasks.ssl.modality_mask import ModalityMaskLoader

from .modal import data_modalities
from .prepared import PreparedData


def budget_steps(train: TrainSection, sizes: Sequence[int]) -> int:
    """The run's step budget, as :class:`PerTaskLoader` counts epochs (all rows / batch size)."""
    if train.steps is not None:
        return train.steps
    per_epoch = max(math.ceil(sum(sizes) / train.batch_size), 1)
    return int(train.epochs or 1) * per_epoch


def schedule_sampler(
    s: SamplerConfig, names: Sequence[str], sizes: Sequence[int], total: int, seed: int
) -> HighResourceFirstSampler | AntiCurriculumSampler:
    """The sampler of ``s.kind`` (``anti_curriculum`` or ``high_resource_first``) over a budget
    of ``total`` steps."""
    if s.kind == "high_resource_first":
        return HighResourceFirstSampler(
            tuple(sizes), total, s.switch, s.high_fraction, s.temperature, seed
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
    return AntiCurriculumSampler(ranking, total, s.ramp, seed)


def sla_loader(loader: BaseLoader, taskset: TaskSet) -> BaseLoader:
    """``loader`` whose batches for an :class:`SLATask` hold the 4 rotations of each image."""
    for t in taskset.tasks:
        if isinstance(t, SLATask):
            loader = SLALoader(loader, t.name)
    return loader


def mask_loader(
    multimodal: MultiModalConfig | None,
    modalities: Sequence[str],
    seed: int,
    loader: BaseLoader,
    taskset: TaskSet,
) -> BaseLoader:
    """``loader`` with modality masking when ``multimodal.masking`` is set."""
    mm = multimodal
    if mm is None or mm.masking is None:
        return loader
    rec = {t: m for t, m in mm.masking.reconstruct.items() if t in taskset.names}
    return ModalityMaskLoader(loader, tuple(modalities), mm.masking.p, seed, rec)


def make_loader(
    train: TrainSection,
    data: DataConfig,
    multimodal: MultiModalConfig | None,
    seed: int,
    prepared: PreparedData,
    taskset: TaskSet,
) -> BaseLoader:
    """The training batch stream; auxiliary tasks in ``taskset`` add their pretext groups."""
    base: BaseLoader = _base_loader(train, data, seed, prepared, taskset)
    base = mask_loader(multimodal, list(data_modalities(data)), seed, base, taskset)
    pretexts = {n: p for n, p in prepared.pretexts.items() if n in taskset.names}
    loader = PretextLoader(base, pretexts, seed=seed) if pretexts else base
    return sla_loader(loader, taskset)  # SLA tasks see the 4 rotations of their images


def _base_loader(
    train: TrainSection, data: DataConfig, seed: int, prepared: PreparedData, taskset: TaskSet
) -> JointLoader | PerTaskLoader:
    split = prepared.splits["train"]
    bs = train.batch_size
    if isinstance(split, TensorData):
        return JointLoader(split, bs, seed=seed)
    datasets = {n: split[n] for n in taskset.names if n not in prepared.pretexts}
    assert isinstance(data, PerTaskData)
    s = data.sampler
    sizes = [len(d) for d in datasets.values()]

    def scheduled() -> Sampler:
        return schedule_sampler(s, list(datasets), sizes, budget_steps(train, sizes), seed)

    samplers: dict[str, Callable[[], Sampler]] = {
        "proportional": lambda: TemperatureSampler.proportional(sizes, seed),
        "temperature": lambda: TemperatureSampler(tuple(sizes), s.temperature, seed),
        "uniform": lambda: TemperatureSampler.uniform(sizes, seed),
        "round_robin": lambda: RoundRobinSampler(len(sizes)),
        "all": lambda: AllTasksSampler(len(sizes)),
        "anti_curriculum": scheduled,
        "high_resource_first": scheduled,
    }
    # one task (a single-task baseline): every sampler draws it at every step, and a schedule
    # over tasks (anti_curriculum's ``order`` lists the joint run's tasks) has nothing to order
    sampler = RoundRobinSampler(1) if len(datasets) == 1 else samplers[s.kind]()
    return PerTaskLoader(datasets, bs, sampler, seed=seed)


def max_steps(train: TrainSection, steps_per_epoch: int) -> int:
    """The run's step budget: ``train.steps``, or ``train.epochs`` epochs of the loader."""
    return train.steps if train.steps is not None else int(train.epochs or 1) * steps_per_epoch
