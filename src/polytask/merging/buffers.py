"""Running statistics in merges: which tensors they are, what is written for them, what is refused.

Batch-norm (and instance-norm) layers keep non-trainable running statistics next to their weights.
They describe one model's activations; merging them like weights extrapolates them as soon as the
coefficients sum above 1 (task arithmetic with λ·T > 1, AdaMerging, TIES' disjoint mean of
sparse vectors), and a running variance can turn negative.

**Detection (by name and dtype).** A tensor is a running statistic when the last component of its
dotted name is ``running_mean``, ``running_var`` or ``num_batches_tracked`` (PyTorch's names for
``_BatchNorm`` / ``_InstanceNorm`` buffers, and therefore those of every state dict and
``trunk.safetensors`` polytask writes). Non-floating tensors (``num_batches_tracked``, integer
buffers) are always copied from the base. A statistic is never told apart by its values.

**Policies** (``buffers:``) for the floating statistics, with θ_0 the base and θ_t the fine-tuned
values:

* ``average``: (1/T) Σ_t θ_t, the unweighted mean of the fine-tuned statistics (a convex
  combination: a variance stays ≥ 0). The default without data.
* ``base``: θ_0, copied.
* ``merge``: merged by the method like any weight (may extrapolate; checked when written).
* ``recompute``: re-estimated from data with the merged weights (REPAIR's reset, see
  :func:`polytask.models.recompute_norm_stats`); needs data (``run:`` in a merge config, where it
  is the default). The merge itself starts from ``average``.

Every merge checks what it writes: a non-finite tensor, or a ``running_var`` with a negative entry,
is a one-line :class:`~polytask._core.PolytaskError` naming the tensor, never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from polytask._core import PolytaskError, all_finite

__all__ = [
    "BUFFER_NAMES",
    "BUFFER_POLICIES",
    "BufferPolicy",
    "buffer_value",
    "check_policy",
    "check_written",
    "is_buffer",
]

BufferPolicy = Literal["recompute", "base", "average", "merge"]
BUFFER_POLICIES: tuple[str, ...] = ("recompute", "base", "average", "merge")
#: last name components of running statistics (PyTorch's batch-norm / instance-norm buffers)
BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")
_VARIANCE = "running_var"


def is_buffer(key: str) -> bool:
    """True when ``key`` names a running statistic (``*.running_mean`` / ``running_var`` /
    ``num_batches_tracked``)."""
    return key.rsplit(".", 1)[-1] in BUFFER_NAMES


def check_policy(policy: str, *, data: bool = False) -> None:
    """``policy`` must be one of :data:`BUFFER_POLICIES`; ``recompute`` only where the caller
    re-estimates the statistics (``data=True``)."""
    if policy not in BUFFER_POLICIES:
        raise PolytaskError(f"buffers must be one of {BUFFER_POLICIES}, got {policy!r}")
    if policy == "recompute" and not data:
        raise PolytaskError(
            "buffers: 'recompute' re-estimates running statistics from data: merge from a run "
            "(run: in a merge config), or use 'average' or 'base'"
        )


def buffer_value(policy: str, base: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The value written for a statistic under ``policy`` (``base`` or ``average``; ``recompute``
    starts from ``average``), in the base's dtype."""
    if policy == "base" or not tensors:
        return base.clone()
    work = torch.float64 if base.dtype == torch.float64 else torch.float32
    total = torch.zeros(base.shape, dtype=work)
    for tensor in tensors:
        total.add_(tensor.to(work))
    return total.div_(len(tensors)).to(base.dtype)


def check_written(key: str, tensor: torch.Tensor, where: str = "merge") -> None:
    """Refuse a tensor that must not be written: NaN/Inf, or a negative running variance."""
    if not tensor.is_floating_point():
        return
    if not all_finite(tensor):
        raise PolytaskError(f"{where}: tensor {key!r} would be written with NaN or Inf")
    if key.rsplit(".", 1)[-1] == _VARIANCE and bool((tensor < 0).any()):
        low = float(tensor.min())
        raise PolytaskError(
            f"{where}: tensor {key!r} would be written with a negative running variance "
            f"(min {low:.4g}); the merge extrapolated it: use buffers: average, base or recompute"
        )
