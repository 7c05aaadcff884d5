"""Deterministic batch streams for both shapes of multi-task data.

* :class:`JointLoader` — one dataset with several label columns (some missing). Every batch
  carries all tasks' targets.
* :class:`PerTaskLoader` — one dataset per task (heterogeneous inputs and sizes). A sampler picks
  the task(s) of each step; each task walks through its own shuffled epochs.

A step's batch is a list of :class:`Group` (inputs + the targets of the tasks those inputs
feed). The order of batches is a pure function of ``(seed, step)`` plus the per-task draw
counters in ``state_dict()``, so a resumed run sees exactly the batches an uninterrupted run
would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.data.column_targets import ColumnTargets
from polytask.tasks.data.tensors import Inputs, TensorData, index_inputs, inputs_to


@dataclass(frozen=True)
class Group:
    """Inputs and the targets of the tasks they feed (NaN = missing label).

    ``paired`` names the tasks whose targets are row indices inside this group (contrastive
    partners): splitting the group must keep each pair together and re-index those targets.
    """

    inputs: Inputs
    targets: Mapping[str, Tensor]
    paired: frozenset[str] = frozenset()

    def to(self, device: torch.device) -> Group:
        """This group with inputs and targets on ``device`` (itself when already there)."""
        if isinstance(self.targets, ColumnTargets):
            table = self.targets.to(device)
            if _on(self.inputs, device) and table is self.targets:
                return self
            return Group(inputs_to(self.inputs, device), table, self.paired)
        if _on(self.inputs, device) and all(t.device == device for t in self.targets.values()):
            return self
        targets = {k: v.to(device, non_blocking=True) for k, v in self.targets.items()}
        return Group(inputs_to(self.inputs, device), targets, self.paired)


def _on(inputs: Inputs, device: torch.device) -> bool:
    values = [inputs] if isinstance(inputs, Tensor) else list(inputs.values())
    return all(v.device == device for v in values)


class Sampler(Protocol):
    def tasks_for_step(self, step: int) -> list[int]: ...


def _epoch_order(n: int, seed: int, salt: int, epoch: int, shuffle: bool) -> Tensor:
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(hash((seed, salt, epoch)) % (2**63))
    return torch.randperm(n, generator=g)


def batch_indices(
    n: int, batch_size: int, drop_last: bool, seed: int, salt: int, j: int, shuffle: bool
) -> Tensor:
    """Row indices of batch ``j`` over ``n`` rows: a pure function of ``(seed, salt, j)``
    (epoch ``j // batches per epoch`` in the order that epoch's seed draws)."""
    per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    per_epoch = max(per_epoch, 1)
    epoch, pos = divmod(j, per_epoch)
    order = _epoch_order(n, seed, salt, epoch, shuffle)
    return order[pos * batch_size : (pos + 1) * batch_size]


class JointLoader:
    """Batches of one multi-label dataset; batch ``j`` depends only on ``(seed, j)``.

    The targets are held as one ``[N, K]`` table (:class:`ColumnTargets`), so a batch's targets
    are one index operation however many tasks there are; ``Group.targets`` is still the
    ``{task: [B] tensor}`` mapping."""

    def __init__(
        self,
        data: TensorData,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise PolytaskError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        n = len(data)
        self.steps_per_epoch = max(n // batch_size if drop_last else math.ceil(n / batch_size), 1)
        self.targets = ColumnTargets.from_mapping(data.targets, n)

    def batch(self, step: int) -> list[Group]:
        idx = batch_indices(
            len(self.data), self.batch_size, self.drop_last, self.seed, 0, step, self.shuffle
        )
        return [Group(index_inputs(self.data.inputs, idx), self.targets.select(idx))]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None


class PerTaskLoader:
    """Batches from one dataset per task; ``sampler`` picks the task(s) of each step."""

    def __init__(
        self,
        datasets: Mapping[str, TensorData],
        batch_size: int,
        sampler: Sampler,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise PolytaskError(f"batch_size must be >= 1, got {batch_size}")
        self.names = tuple(datasets)
        self.datasets = dict(datasets)
        self.batch_size, self.sampler, self.seed, self.drop_last = (
            batch_size,
            sampler,
            seed,
            drop_last,
        )
        self.draws = [0] * len(self.names)
        total = sum(len(d) for d in self.datasets.values())
        self.steps_per_epoch = max(math.ceil(total / batch_size), 1)

    def batch(self, step: int) -> list[Group]:
        groups = []
        for k in self.sampler.tasks_for_step(step):
            name = self.names[k]
            data = self.datasets[name]
            idx = batch_indices(
                len(data), self.batch_size, self.drop_last, self.seed, k + 1, self.draws[k], True
            )
            self.draws[k] += 1
            part = data.select(idx)
            groups.append(Group(part.inputs, {name: part.targets[name]}))
        return groups

    def state_dict(self) -> dict[str, Any]:
        return {"draws": list(self.draws)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        draws = list(state.get("draws", []))
        if len(draws) != len(self.names):
            raise PolytaskError(
                f"loader state has {len(draws)} task counters, data has {len(self.names)} tasks"
            )
        self.draws = [int(d) for d in draws]
