"""What every per-tensor merge method is, and the small checks they share.

A per-tensor method is a frozen dataclass called on one tensor name at a time::

    merged = method(base, finetuned, name="encoder.layer.0.output.dense.weight")

``base`` is the pre-trained tensor, ``finetuned`` a sequence of the fine-tuned models' tensors
(same shape and dtype). The sequence may be lazy: the streaming executor hands one that reads a
model's tensor from disk on each access, so methods touch the models one at a time and never
modify what they are given. The result has ``base``'s shape and dtype; arithmetic runs in
float32 (float64 for float64 inputs).

Large tensors may be merged in row blocks (``chunkable`` methods only): then ``base`` and the
fine-tuned tensors are rows of the full tensor, ``offset`` is the flat index of their first
element (random masks are drawn per element position), and statistics that need the whole
tensor arrive precomputed as ``thresholds``. Methods that rank magnitudes say which ranks they
need: ``tensor_ranks(numel, index)`` within one tensor, ``global_ranks(total, index)`` over the
whole model (``topk="model"``); the executor finds those k-th largest task-vector magnitudes
with an exact streaming selection and passes them as ``thresholds[index]``. Called without
``thresholds``, a method computes them from the tensor it was given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from polytask._core import PolytaskError

__all__ = ["TensorMerge", "check_fraction", "compute_dtype", "per_model"]

Thresholds = Sequence[Sequence[float]] | None


@runtime_checkable
class TensorMerge(Protocol):
    """``method(base, finetuned, name=..., thresholds=..., offset=...) -> merged`` on one tensor."""

    @property
    def chunkable(self) -> bool:
        """True when rows of a tensor can be merged separately (given ``thresholds``)."""

    def __call__(
        self,
        base: torch.Tensor,
        finetuned: Sequence[torch.Tensor],
        *,
        name: str = "",
        thresholds: Thresholds = None,
        offset: int = 0,
    ) -> torch.Tensor: ...

    def check_models(self, n: int) -> None:
        """Raise PolytaskError when the method cannot merge ``n`` fine-tuned models."""

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]:
        """k-th largest magnitudes (1-based) of model ``index``'s task vector within one tensor."""

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        """k-th largest magnitudes (1-based) of model ``index``'s whole task vector needed."""


class NoThresholds:
    """For dense methods (no top-k): they need no magnitude ranks from the executor."""

    def tensor_ranks(self, numel: int, index: int) -> tuple[int, ...]:
        return ()

    def global_ranks(self, total: int, index: int) -> tuple[int, ...]:
        return ()


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def per_model(
    value: float | Sequence[float] | None, n: int, field: str, default: float
) -> list[float]:
    """Broadcast a scalar option (or check a per-model tuple's length) to ``n`` values."""
    if value is None:
        return [default] * n
    if isinstance(value, int | float):
        return [float(value)] * n
    values = [float(v) for v in value]
    if len(values) != n:
        raise PolytaskError(f"option {field!r} has {len(values)} values but there are {n} models")
    return values


def check_fraction(value: float | Sequence[float], field: str, *, allow_zero: bool = False) -> None:
    """Each value must lie in (0, 1] (or [0, 1] with ``allow_zero``)."""
    values = [value] if isinstance(value, int | float) else list(value)
    for v in values:
        low_ok = v >= 0 if allow_zero else v > 0
        if not (math.isfinite(v) and low_ok and v <= 1):
            bound = "[0, 1]" if allow_zero else "(0, 1]"
            raise PolytaskError(f"option {field!r} must lie in {bound}, got {v}")
