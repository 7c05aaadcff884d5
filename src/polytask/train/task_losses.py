"""The per-task losses of one batch, as ONE ``[K]`` vector in task-set order.

Each group's inputs go through the trunk once. Then, when the heads are one stacked linear layer
(:class:`~polytask.models.LinearHeads`) and the model does not override ``forward_heads``, the
scalar tasks of one kind and loss (``binary``/``bce``, ``regression``/``mse|l1|huber``) that the
group feeds are scored together: their head columns ``[B, K_g]`` and targets ``[B, K_g]`` go
through ONE stacked masked loss (:mod:`polytask.tasks.stacked_losses`), one call and one small
graph however many tasks there are. Every other task (multi-class, multi-label, contrastive,
reconstruction, MLP or tower heads, a kind with a single task in the group) takes the per-task
path, ``task.compute_loss``. Both give the same values (to float rounding); a single-task group
of a kind is computed per task, exactly as before.

Task weights are applied. A task no group fed this step has a constant 0 loss (no graph) and a
count of 0; the counts are the labelled rows of each task in this batch (rows with at least one
non-NaN target entry), what balancing reads as task presence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.models import LinearHeads, MultiTaskModel
from polytask.tasks import TaskSet
from polytask.tasks.data import Group
from polytask.tasks.data.column_targets import ColumnTargets
from polytask.tasks.stacked_losses import STACKABLE_KINDS, STACKED_LOSSES


class StepLosses(NamedTuple):
    """``losses`` ``[K]`` (task weights applied; 0 for a task not fed), ``counts`` ``[K]`` int64
    labelled rows, ``features``: the trunk output of each group, in batch order."""

    losses: Tensor
    counts: Tensor
    features: list[Tensor]


class _Parts:
    """Loss and count pieces with the task indices they belong to, assembled into ``[K]``."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.order: list[int] = []
        self.losses: list[Tensor] = []
        self.counts: list[Tensor] = []

    def add(self, indices: list[int], losses: Tensor, counts: Tensor) -> None:
        self.order.extend(indices)
        self.losses.append(losses.reshape(-1))
        self.counts.append(counts.reshape(-1).to(torch.int64))

    def assemble(self, device: torch.device, taskset: TaskSet) -> tuple[Tensor, Tensor]:
        if len(set(self.order)) != len(self.order):
            twice = next(k for k in self.order if self.order.count(k) > 1)
            raise PolytaskError(
                f"task {taskset.names[twice]!r} is fed by more than one group of the same batch"
            )
        missing = sorted(set(range(self.k)) - set(self.order))
        dtype = self.losses[0].dtype if self.losses else torch.float32
        if missing:
            self.add(missing, torch.zeros(len(missing), dtype=dtype, device=device),
                     torch.zeros(len(missing), dtype=torch.int64, device=device))  # fmt: skip
        losses, counts = torch.cat(self.losses), torch.cat(self.counts)
        if self.order != list(range(self.k)):
            where = [0] * self.k
            for j, task in enumerate(self.order):
                where[task] = j
            perm = torch.tensor(where, dtype=torch.long, device=losses.device)
            losses, counts = losses[perm], counts[perm]
        return losses, counts


def labelled_rows(target: Tensor) -> Tensor:
    """Rows of ``target`` with at least one label (non-NaN entry), as a 0-d int64 tensor."""
    mask = ~torch.isnan(target)
    return (mask.flatten(1).any(dim=1) if mask.dim() > 1 else mask).sum()


def stacked_heads(model: MultiTaskModel) -> LinearHeads | None:
    """The heads when stacked losses may read their raw columns: exactly :class:`LinearHeads`
    (no subclass that could change its forward) under the stock ``forward_heads``."""
    heads = getattr(model, "heads", None)
    plain = getattr(type(model), "forward_heads", None) is MultiTaskModel.forward_heads
    return heads if type(heads) is LinearHeads and plain else None


class _Stackable(NamedTuple):
    loss: str | None  # the stacked loss the task's kind and loss allow, else None
    position: int  # its index in the task set
    weight: float


_MEMO: dict[int, tuple[TaskSet, dict[str, _Stackable]]] = {}


def _stackable(taskset: TaskSet) -> dict[str, _Stackable]:
    """Per task, what stacking needs; memoised per TaskSet object (a TaskSet never changes; the
    memo holds it, so its id cannot be reused while cached)."""
    hit = _MEMO.get(id(taskset))
    if hit is not None and hit[0] is taskset:
        return hit[1]
    table = {
        t.name: _Stackable(
            t.loss if t.kind in STACKABLE_KINDS and t.loss in STACKED_LOSSES else None, k, t.weight
        )
        for k, t in enumerate(taskset.tasks)
    }
    if len(_MEMO) >= 8:
        _MEMO.clear()
    _MEMO[id(taskset)] = (taskset, table)
    return table


def _bins(
    names: Sequence[str], cols: Sequence[range], scalar: Mapping[str, bool],
    targets: Mapping[str, Tensor], stackable: Mapping[str, _Stackable],
) -> tuple[dict[str, list[int]], list[int]]:  # fmt: skip
    """Positions in ``names`` grouped by stacked loss (bins of two or more), and the rest."""
    bins: dict[str, list[int]] = {}
    rest: list[int] = []
    # a column of the target table is [B]: no need to make a view per task to see it
    table = targets.column if isinstance(targets, ColumnTargets) else None
    for j, (n, c) in enumerate(zip(names, cols)):
        loss = stackable[n].loss
        vector = (n in table) if table is not None else targets[n].dim() == 1
        if loss is not None and len(c) == 1 and scalar[n] and vector:
            bins.setdefault(loss, []).append(j)
        else:
            rest.append(j)
    for loss in [b for b, pos in bins.items() if len(pos) < 2]:
        rest.extend(bins.pop(loss))
    return bins, sorted(rest)


def _columns(out: Tensor, starts: list[int]) -> Tensor:
    if starts == list(range(starts[0], starts[0] + len(starts))):
        return out[:, starts[0] : starts[0] + len(starts)]
    return out[:, torch.tensor(starts, dtype=torch.long, device=out.device)]


def _block(targets: Mapping[str, Tensor], names: list[str]) -> Tensor:
    if isinstance(targets, ColumnTargets) and all(n in targets.column for n in names):
        return targets.block(names)
    return torch.stack([targets[n] for n in names], dim=1)


def _stacked_group(
    z: Tensor, group: Group, names: list[str], heads: LinearHeads, taskset: TaskSet,
    parts: _Parts,
) -> None:  # fmt: skip
    out = heads.linear(z)
    cols = heads.output_columns(names)
    scalar = dict(zip(heads.names, heads.scalar))
    stackable = _stackable(taskset)
    bins, rest = _bins(names, cols, scalar, group.targets, stackable)
    for loss, pos in bins.items():
        chosen = [names[j] for j in pos]
        values, counts = STACKED_LOSSES[loss](
            _columns(out, [cols[j].start for j in pos]), _block(group.targets, chosen)
        )
        weights = [stackable[n].weight for n in chosen]
        if any(w != 1.0 for w in weights):
            values = values * torch.tensor(weights, dtype=values.dtype, device=values.device)
        parts.add([stackable[n].position for n in chosen], values, counts)
    for j in rest:
        n, c = names[j], cols[j]
        pred = out[:, c.start : c.stop]
        _one(taskset, n, pred.squeeze(-1) if scalar[n] else pred, group.targets[n], parts)


def _one(taskset: TaskSet, name: str, pred: Tensor, target: Tensor, parts: _Parts) -> None:
    task = taskset[name]
    loss = task.compute_loss(pred, target)
    loss = loss * task.weight if task.weight != 1.0 else loss
    parts.add([taskset.index(name)], loss, labelled_rows(target))


def compute_losses(model: MultiTaskModel, batch: Sequence[Group], taskset: TaskSet) -> StepLosses:
    """The ``[K]`` task losses, ``[K]`` labelled-row counts and each group's features."""
    parts = _Parts(len(taskset))
    features: list[Tensor] = []
    heads = stacked_heads(model)
    for group in batch:
        z = model.forward_features(group.inputs)
        features.append(z)
        names = [n for n in taskset.names if n in group.targets]
        if heads is not None:
            _stacked_group(z, group, names, heads, taskset, parts)
            continue
        outputs = model.forward_heads(z, names)
        for n in names:
            _one(taskset, n, outputs[n], group.targets[n], parts)
    device = features[0].device if features else torch.device("cpu")
    losses, counts = parts.assemble(device, taskset)
    return StepLosses(losses, counts, features)


def fed_tasks(batch: Sequence[Group], taskset: TaskSet) -> tuple[str, ...]:
    """The tasks some group of ``batch`` carries targets for, in task-set order."""
    fed = set().union(*(g.targets for g in batch))
    return tuple(n for n in taskset.names if n in fed)
