"""What the executor reads from: checkpoints on disk or plain dicts of tensors, behind one protocol.

:class:`TensorSource` is the reading side of :class:`~polytask.merging.io.CheckpointReader`
(``keys``, ``shape``, ``dtype``, ``get``, ``get_rows``, ``file_of``); :class:`StateSource` gives an in-memory
``dict[str, Tensor]`` the same face so in-memory merges run the very same code as streamed ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import torch

from polytask._core import PolytaskError

__all__ = ["StateSource", "TensorSource"]


class TensorSource(Protocol):
    """Read access to named tensors, one at a time."""

    def keys(self) -> list[str]: ...

    def shape(self, key: str) -> tuple[int, ...]: ...

    def dtype(self, key: str) -> torch.dtype: ...

    def get(self, key: str) -> torch.Tensor: ...

    def get_rows(self, key: str, start: int, stop: int) -> torch.Tensor: ...

    def file_of(self, key: str) -> str | Path: ...


class StateSource:
    """A :class:`TensorSource` over a dict of tensors; ``label`` names it in error messages."""

    def __init__(self, state: Mapping[str, torch.Tensor], label: str) -> None:
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise PolytaskError(f"{label}: entry {key!r} is not a tensor")
        self._state = state
        self.label = label

    def keys(self) -> list[str]:
        return list(self._state)

    def _item(self, key: str) -> torch.Tensor:
        try:
            return self._state[key]
        except KeyError:
            raise PolytaskError(f"tensor {key!r} is not in {self.label}") from None

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._item(key).shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._item(key).dtype

    def get(self, key: str) -> torch.Tensor:
        return self._item(key).detach().cpu()

    def get_rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        return self._item(key).detach()[start:stop].cpu()

    def file_of(self, key: str) -> str:
        return self.label
