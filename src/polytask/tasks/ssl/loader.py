"""Add self-supervised groups to any batch stream.

:class:`PretextLoader` wraps a loader (``JointLoader``, ``PerTaskLoader`` or anything with
``batch(step)``, ``steps_per_epoch``, ``state_dict()``) and appends, to every batch, one
:class:`~polytask.tasks.data.Group` per pretext task. The group's inputs come from the base
batch's first group, or — when ``unlabeled`` data is given — from a stream of unlabeled rows that
is a pure function of ``(seed, step)``. Each pretext's generator is seeded from
``(seed, step, task index)``, so a run resumed at step ``s`` sees exactly the groups an
uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch

from polytask._core import PolytaskError
from polytask.tasks.data.loaders import Group, batch_indices
from polytask.tasks.data.tensors import Inputs, TensorData
from polytask.tasks.ssl.protocol import Pretext

_UNLABELED_SALT = 7_919  # keeps the unlabeled stream's shuffles apart from the base loader's


class BaseLoader(Protocol):
    steps_per_epoch: int

    def batch(self, step: int) -> list[Group]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def pretext_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of pretext ``index`` at ``step`` (a pure function of the three numbers)."""
    return torch.Generator().manual_seed(hash((seed, step, index, _UNLABELED_SALT)) % (2**63))


class PretextLoader:
    """``base`` batches plus one generated group per pretext task (see the module docstring)."""

    def __init__(
        self,
        base_loader: BaseLoader,
        pretexts: Mapping[str, Pretext],
        seed: int = 0,
        unlabeled: TensorData | None = None,
        batch_size: int | None = None,
    ) -> None:
        if not pretexts:
            raise PolytaskError("PretextLoader: needs at least one pretext task")
        if batch_size is not None and batch_size < 1:
            raise PolytaskError(f"PretextLoader: batch_size must be >= 1, got {batch_size}")
        self.base = base_loader
        self.pretexts = dict(pretexts)
        self.seed = seed
        self.unlabeled = unlabeled
        self.batch_size = batch_size or int(getattr(base_loader, "batch_size", 128))
        self.steps_per_epoch = base_loader.steps_per_epoch

    def source(self, step: int, groups: list[Group]) -> Inputs:
        """The inputs the pretexts of ``step`` are drawn from."""
        if self.unlabeled is None:
            if not groups:
                raise PolytaskError(f"PretextLoader: the base batch of step {step} is empty")
            return groups[0].inputs
        n = len(self.unlabeled)
        idx = batch_indices(n, self.batch_size, False, self.seed, _UNLABELED_SALT, step, True)
        return self.unlabeled.select(idx).inputs

    def batch(self, step: int) -> list[Group]:
        groups = list(self.base.batch(step))
        inputs = self.source(step, groups)
        for k, (name, pretext) in enumerate(self.pretexts.items()):
            seen, target = pretext(inputs, pretext_generator(self.seed, step, k))
            paired = frozenset({name}) if getattr(pretext, "pairs_rows", False) else frozenset()
            groups.append(Group(seen, {name: target}, paired))
        return groups

    def state_dict(self) -> dict[str, Any]:
        return {"base": self.base.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base.load_state_dict(state.get("base", {}))
