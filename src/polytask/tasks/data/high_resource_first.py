"""High-resource first, then the mixture: pre-train on the large tasks, then sample all tasks.

Choi et al., "Order Matters in the Presence of Dataset Imbalance for Multilingual Learning"
(NeurIPS 2023): train on the high-resource task(s) only, then fine-tune jointly on a mixture of
high- and low-resource tasks. As a sampler over ``K`` tasks with training sizes ``n_k`` and a
budget of ``T`` steps:

* high-resource set ``H = {k : n_k ≥ f · max_j n_j}`` (``f = high_fraction``, default 0.5);
* step ``s < S = floor(switch · T)``: draw ``k ∈ H`` with ``p_k ∝ n_k`` (proportional within H);
* step ``s ≥ S``: draw any ``k`` with ``p_k ∝ n_k^{1/τ}`` (temperature ``τ`` over all tasks, the
  usual mixture; ``τ = 1`` proportional).

Like every polytask sampler it is a pure function of ``(seed, step)``, so resume is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polytask._core import PolytaskError
from polytask.tasks.data.sampling import TemperatureSampler


@dataclass(frozen=True)
class HighResourceFirstSampler:
    """High-resource tasks only for the first ``switch`` fraction of ``total_steps``, then all."""

    sizes: tuple[int, ...]
    total_steps: int
    switch: float = 0.5
    high_fraction: float = 0.5
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) <= 0:
            raise PolytaskError(
                f"sampler: every task needs at least one training row, sizes are {list(self.sizes)}"
            )
        if not 0.0 <= self.switch <= 1.0:
            raise PolytaskError(f"sampler.switch must be in [0, 1], got {self.switch}")
        if not 0.0 < self.high_fraction <= 1.0:
            raise PolytaskError(
                f"sampler.high_fraction must be in (0, 1], got {self.high_fraction}"
            )
        if self.total_steps < 1:
            raise PolytaskError(f"sampler: total_steps must be >= 1, got {self.total_steps}")

    @property
    def high(self) -> tuple[int, ...]:
        """Indices of the high-resource tasks (``n_k ≥ high_fraction · max n``)."""
        top = max(self.sizes)
        return tuple(k for k, n in enumerate(self.sizes) if n >= self.high_fraction * top)

    @property
    def switch_step(self) -> int:
        return int(np.floor(self.switch * self.total_steps))

    def probabilities(self, step: int) -> np.ndarray:
        if step >= self.switch_step:
            return TemperatureSampler(self.sizes, self.temperature, self.seed).probabilities
        p = np.zeros(len(self.sizes))
        for k in self.high:
            p[k] = self.sizes[k]
        return p / p.sum()

    def tasks_for_step(self, step: int) -> list[int]:
        rng = np.random.default_rng([self.seed, step])
        return [int(rng.choice(len(self.sizes), p=self.probabilities(step)))]
