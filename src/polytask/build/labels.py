"""Labels held in memory (image data sets) checked against their task's kind, with the one
check every data source uses (:func:`polytask.tasks.data.table.check_labels`); tables are
checked as they are read, where the row of the file is known."""

from __future__ import annotations

from collections.abc import Mapping

from polytask.tasks import TaskSet
from polytask.tasks.data import TensorData
from polytask.tasks.data.table import check_labels

from .prepared import SplitData

__all__ = ["check_split_labels"]


def check_split_labels(taskset: TaskSet, splits: Mapping[str, SplitData], where: str) -> None:
    """Every task's targets in every split against the task's kind; an error names the split
    and the row within it (a multi-label task's label ``j`` is column ``TASK[j]``)."""
    for split, data in splits.items():
        for t in taskset.tasks:
            part = data if isinstance(data, TensorData) else data.get(t.name)
            if part is None or t.name not in part.targets:
                continue
            y = part.targets[t.name].detach().cpu().float().numpy()
            block = y.reshape(len(y), -1).T  # [labels, rows]
            k = block.shape[0]
            names = [t.name] if k == 1 else [f"{t.name}[{j}]" for j in range(k)]
            check_labels(block, names, [t.kind] * k, f"{where} ({split} split)",
                         [t.num_classes] * k)  # fmt: skip
