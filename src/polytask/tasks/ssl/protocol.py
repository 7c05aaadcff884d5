"""The pretext protocol: how a self-supervised task makes its own (inputs, target) pair.

A pretext turns a batch of inputs into the inputs the trunk sees for this task and the target
of the task's head (NaN = not scored). It draws all its randomness from the generator it is
given, so the same ``(inputs, generator state)`` always gives the same pair — which is what makes
training with pretexts resumable bit for bit (see :class:`~polytask.tasks.ssl.PretextLoader`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.tasks.data.tensors import Inputs


@runtime_checkable
class Pretext(Protocol):
    """``pretext(inputs, generator) -> (inputs the trunk sees, target; NaN = not scored)``."""

    def __call__(self, inputs: Inputs, generator: torch.Generator) -> tuple[Inputs, Tensor]: ...


def pick_modality(inputs: Inputs, modality: str | None, who: str) -> Tensor:
    """The tensor a pretext works on: ``inputs`` itself, or ``inputs[modality]`` for dict inputs."""
    if isinstance(inputs, Tensor):
        if modality is not None:
            raise PolytaskError(
                f"{who}: modality {modality!r} named, but the inputs are one tensor, not a dict of modalities"
            )
        return inputs
    if modality is None:
        raise PolytaskError(
            f"{who}: the inputs have several modalities ({', '.join(inputs)}); name one with 'modality'"
        )
    if modality not in inputs:
        raise PolytaskError(
            f"{who}: modality {modality!r} is not in the inputs; they have: {', '.join(inputs)}"
        )
    return inputs[modality]


def replace_modality(inputs: Inputs, modality: str | None, value: Tensor) -> Inputs:
    """``inputs`` with the worked-on tensor replaced by ``value`` (other modalities unchanged)."""
    if isinstance(inputs, Tensor) or modality is None:
        return value
    return {**inputs, modality: value}
