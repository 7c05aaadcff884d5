"""Build the scheduled task samplers (anti-curriculum, high-resource first) from a sampler config."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from polytask._core import PolytaskError
from polytask.tasks.data import AntiCurriculumSampler, HighResourceFirstSampler

from .schema import SamplerConfig, TrainConfig


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
