"""The step budget of the single-task baselines (``polytask train CONFIG --single-task``).

**Rule.** Every single-task run makes as many optimizer steps as the joint run of the same
config makes (``train.steps``, or ``train.epochs`` epochs of the joint loader: all training rows
of all tasks / batch size), and is validated on the joint run's schedule (``train.eval_every``,
else once per joint epoch), so patience and checkpoint selection see the same number of
validations.

* On one shared table (``tox21``, ``table``, images) this is exactly what each task gets in joint
  training, since every batch carries every task; the budget is the one single-task runs always
  had.
* On per-task data (``per_task``) ``epochs`` used to count each task's own rows, so a task with
  14 training rows got ``epochs`` steps (10 steps at ``epochs: 10``, batch 32) while the joint
  model made ``epochs * ceil(all rows / batch)``. The joint run's total is the number of
  updates its shared trunk gets and the most any task gets (every step under the ``all``
  sampler); the task's expected share under ``proportional`` sampling is ``epochs * n_k / B``,
  the old, starving budget again. So the baseline gets the joint total: it is never given fewer
  updates than the model it is compared with, and checkpoint selection on validation keeps the
  extra passes over a small task from turning into overfitting.

The cost: each baseline costs as many steps as the joint run (as it always did on a shared
table).

>>> from polytask.config.schema import TrainSection
>>> train = TrainSection(epochs=10, batch_size=32)
>>> joint_steps(train, [14, 40, 160])  # ceil(214 / 32) = 7 steps an epoch
70
>>> own_steps(train, 14)  # the old per-task rule
10
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from polytask.config.schema import TrainSection
from polytask.tasks.data import TensorData

from .loaders import budget_steps, max_steps
from .prepared import PreparedData

__all__ = ["RULE", "BaselineBudget", "baseline_budget", "joint_steps", "own_steps"]

RULE = (
    "every single-task run makes as many optimizer steps as the joint run (train.steps, or "
    "train.epochs epochs of all training rows of all tasks), validated on the joint run's "
    "schedule (train.eval_every, else once per joint epoch)"
)


def joint_steps(train: TrainSection, sizes: Sequence[int]) -> int:
    """The joint run's optimizer steps over training sets of ``sizes`` rows (one size for a
    shared table, one per task for per-task data)."""
    return budget_steps(train, sizes)


def own_steps(train: TrainSection, rows: int) -> int:
    """The steps a task's own rows alone would give (the rule before the joint budget)."""
    return max_steps(train, max(math.ceil(rows / train.batch_size), 1))


@dataclass(frozen=True)
class BaselineBudget:
    """The steps and validation interval of every single-task run of a config."""

    steps: int
    eval_every: int
    rows: dict[str, int]  # each task's labelled training rows
    own: dict[str, int]  # what the task's own epochs would have given

    def record(self, batch_size: int) -> dict[str, object]:
        """The budget as the report stores it: the rule, the numbers, each task's passes."""
        tasks = {
            n: {
                "train_rows": r,
                "steps": self.steps,
                "own_epochs_steps": self.own[n],
                "passes": round(self.steps * batch_size / max(r, 1), 1),
            }
            for n, r in self.rows.items()
        }
        return {"rule": RULE, "steps": self.steps, "eval_every": self.eval_every, "tasks": tasks}


def baseline_budget(train: TrainSection, prepared: PreparedData) -> BaselineBudget:
    """The budget of the single-task runs of ``prepared``'s (non-auxiliary) tasks."""
    split = prepared.splits["train"]
    names = [t.name for t in prepared.taskset.tasks if not t.auxiliary]
    if isinstance(split, TensorData):
        sizes = [len(split)]
        rows = {n: split.labelled(n) for n in names}
    else:
        sizes = [len(d) for n, d in split.items() if n not in prepared.pretexts]
        rows = {n: split[n].labelled(n) for n in names}
    per_epoch = max(math.ceil(sum(sizes) / train.batch_size), 1)
    own = {n: own_steps(train, len(split if isinstance(split, TensorData) else split[n]))
           for n in names}  # fmt: skip
    return BaselineBudget(joint_steps(train, sizes), train.eval_every or per_epoch, rows, own)
