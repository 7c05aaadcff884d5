"""What the data builders produce: the task set and its split data (:class:`PreparedData`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from polytask.tasks import TaskSet
from polytask.tasks.data import TensorData
from polytask.tasks.ssl import Pretext

#: one split: shared data, or one dataset per task
SplitData = TensorData | dict[str, TensorData]


@dataclass
class PreparedData:
    """Tasks and their train/val/test data (shared, or one dataset per task)."""

    taskset: TaskSet
    splits: dict[str, SplitData]
    per_task: bool
    #: what the report records about the data (source, split, sizes, ...); JSON values
    info: dict[str, object] = field(default_factory=dict)
    #: self-supervised task name → pretext (see polytask.config.ssl); empty without auxiliary tasks
    pretexts: dict[str, Pretext] = field(default_factory=dict)

    @property
    def in_dim(self) -> int:
        first = self.splits["train"]
        data = first if isinstance(first, TensorData) else next(iter(first.values()))
        if isinstance(data.inputs, dict):  # multi-modal: total width (see polytask.config.modal)
            return sum(int(x[0].numel()) for x in data.inputs.values())
        return int(data.inputs.shape[1])
