"""Anti-curriculum over tasks: the hardest task first, easier tasks join as training goes on.

Curriculum learning (Bengio et al., ICML 2009) orders training material from easy to hard;
dataset-level task curricula for multi-task learning (Varshney et al., "Let the Model Decide its
Curriculum for Multitask Learning", 2022) arrange whole tasks by a difficulty score. The
anti-curriculum reverses the order: hardest first.

Rule. Tasks come ranked hardest first, ``r_1, ..., r_K`` — a *declared* order (``order:`` in the
config, e.g. from domain knowledge or from a single-task baseline: the higher a task's
single-task validation loss, or the lower its validation ROC-AUC, the harder). With a budget of
``T`` steps, the pool at step ``s`` is the ``m(s)`` hardest tasks,

    m(s) = min(K, 1 + floor(K · s / (ramp · T))),

so the pool grows by one task every ``ramp · T / K`` steps and holds all tasks from step
``ramp · T`` on (``ramp`` in (0, 1], default 1: the last task joins at ``(K-1)/K · T``). The task of
step ``s`` is drawn uniformly from the pool with a generator seeded by ``(seed, step)`` — a pure
function of ``(seed, step)``, so resume is exact. ``reverse=True`` gives the ordinary
(easiest-first) curriculum from the same ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polytask._core import PolytaskError


@dataclass(frozen=True)
class AntiCurriculumSampler:
    """Draw uniformly among the ``m(s)`` hardest tasks; ``ranking`` lists task indices hardest first."""

    ranking: tuple[int, ...]
    total_steps: int
    ramp: float = 1.0
    seed: int = 0
    reverse: bool = False

    def __post_init__(self) -> None:
        k = len(self.ranking)
        if k == 0 or sorted(self.ranking) != list(range(k)):
            raise PolytaskError(
                f"sampler: the difficulty ranking must list every task index once, got {list(self.ranking)}"
            )
        if not 0.0 < self.ramp <= 1.0:
            raise PolytaskError(f"sampler.ramp must be in (0, 1], got {self.ramp}")
        if self.total_steps < 1:
            raise PolytaskError(f"sampler: total_steps must be >= 1, got {self.total_steps}")

    def pool_size(self, step: int) -> int:
        k = len(self.ranking)
        return min(k, 1 + int(np.floor(k * step / (self.ramp * self.total_steps))))

    def pool(self, step: int) -> tuple[int, ...]:
        order = self.ranking[::-1] if self.reverse else self.ranking
        return order[: self.pool_size(step)]

    def tasks_for_step(self, step: int) -> list[int]:
        pool = self.pool(step)
        rng = np.random.default_rng([self.seed, step])
        return [pool[int(rng.integers(len(pool)))]]
