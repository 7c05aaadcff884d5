"""Multi-stage recipes: the ``stages:`` list of a training config, validated before any data.

Each stage is an ordinary training job derived from the top-level config: keys a stage gives
replace the top-level ones (``data``, ``tasks``, ``balancing``), ``optimizer`` and ``train`` are
merged key by key into the top-level ``train`` section, ``steps`` / ``epochs`` replace the budget,
``sampler`` replaces the ``per_task`` data's sampler, and ``loss_scale: log_classes`` divides each
classification task's weight by ``log C`` (Muppet, see :mod:`polytask.config.loss_scale`).
``load: {from: <earlier stage>, what: trunk | trunk+heads}`` starts the stage from the selected
weights of an earlier stage: the trunk only (every head fresh), or the trunk and the heads of the
tasks both stages share (the other heads fresh). See docs/stages.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from polytask._core import PolytaskError
from polytask._core.catalog import TOX21_TASKS

from .load import validate
from .loss_scale import log_classes_factor
from .schema import (
    PerTaskData,
    StageConfig,
    TaskConfig,
    Tox21Data,
    TrainConfig,
    UnlabeledSmilesData,
)


@dataclass(frozen=True)
class Stage:
    """One validated stage: its declaration and the training config derived for it."""

    index: int
    spec: StageConfig
    config: TrainConfig

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def unlabeled(self) -> UnlabeledSmilesData | None:
        data = self.spec.data
        return data if isinstance(data, UnlabeledSmilesData) else None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def scaled_tasks(tasks: list[TaskConfig]) -> list[TaskConfig]:
    """``tasks`` with each weight multiplied by Muppet's ``1 / log C`` (1 for regression)."""
    return [
        t.model_copy(update={"weight": t.weight * log_classes_factor(t.kind, t.num_classes)})
        for t in tasks
    ]


def _derive(config: TrainConfig, spec: StageConfig, where: str) -> TrainConfig:
    top = config.model_dump(mode="json", exclude={"stages"})
    data = spec.data if spec.data is not None else config.data
    if isinstance(data, UnlabeledSmilesData):
        data = config.data  # the stage's rows come from the unlabeled source, not a table
    if spec.sampler is not None:
        if not isinstance(data, PerTaskData):
            raise PolytaskError(
                f"{where}: key 'sampler': a sampler needs 'per_task' data (one dataset per task)"
            )
        data = data.model_copy(update={"sampler": spec.sampler})
    top["data"] = data.model_dump(mode="json")
    tasks = spec.tasks if spec.tasks is not None else config.tasks
    if spec.loss_scale == "log_classes":
        if tasks is None and isinstance(data, Tox21Data):
            tasks = [TaskConfig(name=n) for n in data.tasks or TOX21_TASKS]
        tasks = scaled_tasks(tasks or [])
    top["tasks"] = [t.model_dump(mode="json") for t in tasks] if tasks is not None else None
    train = _merge(top["train"], spec.train or {})
    if spec.optimizer:
        train["optimizer"] = _merge(train["optimizer"], spec.optimizer)
    if spec.steps is not None or spec.epochs is not None:
        train["steps"], train["epochs"] = spec.steps, spec.epochs
    top["train"] = train
    if spec.balancing is not None:
        top["balancing"] = spec.balancing.model_dump(mode="json")
    if spec.auxiliary is not None:
        top["auxiliary"] = spec.auxiliary or None
    return validate(TrainConfig, top, where)


def parse_stages(config: TrainConfig, where: str) -> list[Stage]:
    """The stages of ``config``, each with its derived training config: unique names,
    ``load.from`` pointing to an earlier stage. Errors are one line naming the file, the stage
    and the key."""
    specs = config.stages or []
    if not specs:
        raise PolytaskError(f"{where}: key 'stages': give at least one stage")
    names = [s.name for s in specs]
    stages: list[Stage] = []
    for i, spec in enumerate(specs):
        here = f"{where}: stages[{i}] {spec.name!r}"
        earlier = names[:i]
        if spec.name in earlier:
            raise PolytaskError(f"{here}: key 'name': stage name {spec.name!r} is used twice")
        if spec.load is not None and spec.load.from_ not in earlier:
            why = f"does not exist (stages: {', '.join(names)})"
            if spec.load.from_ == spec.name:
                why = "is this stage itself"
            elif spec.load.from_ in names:
                why = "comes later; a stage can only load from an earlier one"
            raise PolytaskError(f"{here}: key 'load.from': stage {spec.load.from_!r} {why}")
        stages.append(Stage(i, spec, _derive(config, spec, here)))
    return stages
