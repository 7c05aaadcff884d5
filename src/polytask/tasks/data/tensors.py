"""In-memory multi-task data: inputs plus one target tensor per task (NaN = missing label).

``inputs`` is a tensor ``[N, ...]`` or a dict of such tensors (e.g. ``input_ids`` and
``attention_mask`` for text). ``targets`` maps task names to ``[N]`` or ``[N, L]`` float tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from polytask._core import PolytaskError

Inputs = Tensor | dict[str, Tensor]


def index_inputs(inputs: Inputs, idx: Tensor) -> Inputs:
    """Rows ``idx`` of a tensor or of every tensor in a dict."""
    if isinstance(inputs, Tensor):
        return inputs[idx]
    return {k: v[idx] for k, v in inputs.items()}


def inputs_to(inputs: Inputs, device: torch.device) -> Inputs:
    """A tensor, or every tensor of a dict, on ``device`` (the same objects when already there)."""
    if isinstance(inputs, Tensor):
        return inputs.to(device, non_blocking=True)
    return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}


def num_rows(inputs: Inputs) -> int:
    if isinstance(inputs, Tensor):
        return int(inputs.shape[0])
    sizes = {int(v.shape[0]) for v in inputs.values()}
    if len(sizes) != 1:
        raise PolytaskError(f"input tensors disagree on the number of rows: {sorted(sizes)}")
    return sizes.pop()


@dataclass(frozen=True)
class TensorData:
    """Inputs and per-task targets with the same number of rows; validated on construction."""

    inputs: Inputs
    targets: Mapping[str, Tensor]
    name: str = "data"

    def __post_init__(self) -> None:
        n = num_rows(self.inputs)
        if n == 0:
            raise PolytaskError(f"{self.name}: no rows")
        for task, y in self.targets.items():
            if int(y.shape[0]) != n:
                raise PolytaskError(
                    f"{self.name}: targets of task {task!r} have {y.shape[0]} rows, inputs have {n}"
                )
            if not torch.is_floating_point(y):
                raise PolytaskError(
                    f"{self.name}: targets of task {task!r} must be float (NaN = missing)"
                )

    def __len__(self) -> int:
        return num_rows(self.inputs)

    def select(self, idx: Tensor | list[int]) -> TensorData:
        """The rows ``idx`` (used for splits and batches)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return TensorData(
            index_inputs(self.inputs, idx), {k: v[idx] for k, v in self.targets.items()}, self.name
        )

    def labelled(self, task: str) -> int:
        """How many rows carry at least one label for ``task``."""
        y = self.targets[task]
        mask = ~torch.isnan(y)
        return int(mask.reshape(len(y), -1).any(dim=1).sum())
