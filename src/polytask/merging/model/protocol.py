"""The protocol of merges that need the whole model or data, and the outcome they return.

A per-tensor merge (``merging.tensor``) sees one tensor at a time, so it can be streamed. The
methods here need more: every tensor at once (TALL masks, Consensus), or a model and a few batches
of each task's data (Fisher, RegMean, AdaMerging). They share one call shape::

    outcome = method.merge(base, finetuned, **data)

where ``base`` and every entry of ``finetuned`` are plain ``dict[str, Tensor]`` state dicts with
the same keys and shapes, and ``data`` holds what the method declares in ``needs`` (for example
``model=`` and ``data=``). The outcome carries the merged state dict, a metadata dict recording
every convention and option used, and optional extra tensors (e.g. bit-packed masks) that can be
saved next to the merged checkpoint with safetensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

StateDict = Mapping[str, Tensor]


@dataclass(frozen=True)
class MergeOutcome:
    """What a :class:`ModelMerge` returns.

    Attributes:
        state: the merged state dict (same keys, shapes and dtypes as the base).
        metadata: JSON-serialisable record of the method, every option and convention used, and
            what was learned or selected (coefficients, λ per task, mask densities...).
        tensors: extra named tensors to store alongside the merged state (e.g. packed masks).
        tensor_metadata: the safetensors header metadata of the file holding ``tensors``.
    """

    state: dict[str, Tensor]
    metadata: dict[str, Any]
    tensors: dict[str, Tensor] = field(default_factory=dict)
    tensor_metadata: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class ModelMerge(Protocol):
    """A merge that needs the whole model, or data, to combine fine-tuned checkpoints.

    ``needs`` names the keyword arguments :meth:`merge` requires beyond the checkpoints (each
    method documents alternatives, e.g. precomputed Fishers instead of ``model``/``data``).
    """

    @property
    def needs(self) -> frozenset[str]: ...

    def merge(
        self, base: StateDict, finetuned: Sequence[StateDict], /, **data: Any
    ) -> MergeOutcome: ...
