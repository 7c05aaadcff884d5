"""What affinity reads from the rest of polytask: a training step's statistics, a tensor store.

Both are structural (:class:`typing.Protocol`): the trainer and the checkpoint readers are
written elsewhere and never imported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class StepInfo(Protocol):
    """What a training loop hands to ``callback.on_step(info)`` after each optimizer step.

    ``task_names`` fixes the row order of ``losses``, ``weights`` and ``gramian``.
    ``gramian`` is ``G[i, j] = <g_i, g_j>``, the Gramian of the per-task gradients with respect
    to the shared parameters (or shared features) when the balancing step computed one, else
    ``None``.
    """

    @property
    def step(self) -> int: ...

    @property
    def epoch(self) -> int: ...

    @property
    def task_names(self) -> tuple[str, ...]: ...

    @property
    def losses(self) -> Tensor: ...

    @property
    def weights(self) -> Tensor | None: ...

    @property
    def gramian(self) -> Tensor | None: ...


@runtime_checkable
class TensorReader(Protocol):
    """A lazy tensor store (one checkpoint): list its tensor names and read one at a time."""

    def keys(self) -> Iterable[str]: ...

    def get(self, key: str) -> Tensor: ...
