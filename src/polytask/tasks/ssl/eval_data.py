"""Fixed evaluation data for self-supervised tasks, generated once from a split's inputs.

Validation and test metrics of a pretext task (masked-feature rmse, partner retrieval accuracy)
need targets, which the pretext makes. :func:`pretext_split` applies each pretext to the whole
split once, with a generator seeded from ``(seed, task index)``, so every evaluation of a run
sees the same masks and views. The result maps every task name to its data: supervised tasks to
the split as it was, pretext tasks to their generated :class:`TensorData`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from polytask._core import PolytaskError
from polytask.tasks.data.tensors import TensorData
from polytask.tasks.ssl.protocol import Pretext

_EVAL_STEP = -1  # never a training step, so evaluation masks differ from every training mask


def pretext_split(
    split: TensorData | Mapping[str, TensorData], pretexts: Mapping[str, Pretext], seed: int = 0
) -> dict[str, TensorData]:
    """``{task: data}`` for the split's own tasks plus one generated dataset per pretext task."""
    if isinstance(split, TensorData):
        out = {name: split for name in split.targets}
        source = split
    else:
        out = dict(split)
        if not out:
            raise PolytaskError("pretext_split: the split has no data")
        source = next(iter(out.values()))
    for k, (name, pretext) in enumerate(pretexts.items()):
        if name in out:
            raise PolytaskError(f"pretext task {name!r} clashes with a task of the data")
        g = torch.Generator().manual_seed(hash((seed, _EVAL_STEP, k)) % (2**63))
        inputs, target = pretext(source.inputs, g)
        out[name] = TensorData(inputs, {name: target}, f"{source.name}:{name}")
    return out
