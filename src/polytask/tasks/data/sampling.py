"""Task samplers for one-dataset-per-task data: which task feeds the next step.

All samplers are stateless functions of ``(seed, step)``, so resuming at step ``s`` gives the
same sequence without saving generator state.

* temperature-scaled: ``p_k ∝ n_k^{1/T}`` with ``n_k`` the training size of task ``k``.
  ``T = 1`` is *proportional*, ``T → ∞`` is *uniform* (both provided as constructors).
* round-robin: task ``step mod K``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polytask._core import PolytaskError


@dataclass(frozen=True)
class TemperatureSampler:
    """Draw task ``k`` with probability ``n_k^{1/T} / Σ_j n_j^{1/T}`` (seeded per step)."""

    sizes: tuple[int, ...]
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) <= 0:
            raise PolytaskError(
                f"sampler: every task needs at least one training row, sizes are {list(self.sizes)}"
            )
        if not self.temperature > 0:
            raise PolytaskError(f"sampler: temperature must be > 0, got {self.temperature}")

    @classmethod
    def proportional(cls, sizes: Sequence[int], seed: int = 0) -> TemperatureSampler:
        return cls(tuple(sizes), 1.0, seed)

    @classmethod
    def uniform(cls, sizes: Sequence[int], seed: int = 0) -> TemperatureSampler:
        return cls(tuple(sizes), math.inf, seed)

    @property
    def probabilities(self) -> np.ndarray:
        n = np.asarray(self.sizes, dtype=np.float64)
        logits = np.zeros_like(n) if math.isinf(self.temperature) else np.log(n) / self.temperature
        p = np.exp(logits - logits.max())
        return p / p.sum()

    def tasks_for_step(self, step: int) -> list[int]:
        rng = np.random.default_rng([self.seed, step])
        return [int(rng.choice(len(self.sizes), p=self.probabilities))]


@dataclass(frozen=True)
class RoundRobinSampler:
    """Tasks in turn: ``step mod K``."""

    num_tasks: int

    def tasks_for_step(self, step: int) -> list[int]:
        return [step % self.num_tasks]


@dataclass(frozen=True)
class AllTasksSampler:
    """Every task in every step (one batch from each task's data); needed by gradient balancing."""

    num_tasks: int

    def tasks_for_step(self, step: int) -> list[int]:
        return list(range(self.num_tasks))
