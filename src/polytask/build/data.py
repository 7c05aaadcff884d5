"""Turn the ``data`` and ``tasks`` sections of a train config into a TaskSet and split data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from polytask._core import PolytaskError
from polytask.config.images import ImageData
from polytask.config.schema import (
    ColumnsFeaturizer,
    EcfpFeaturizer,
    PerTaskData,
    TableData,
    TaskConfig,
    TaskTable,
    Tox21Data,
    TrainConfig,
)
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import (
    TOX21_TASKS,
    TensorData,
    ecfp,
    label_array,
    load_tox21,
    read_table,
    tox21_path,
)

from .images import prepare_images
from .label_columns import expand_tasks, label_targets, reserved_columns
from .labels import check_split_labels
from .modal import attach_modal, data_modalities, modal_inputs, standardize
from .prepared import PreparedData, SplitData
from .splits import make_split, split_columns
from .ssl import attach_auxiliary
from .standardize import STANDARDIZE, fit_standardization

__all__ = ["PreparedData", "SplitData", "make_split", "make_task", "prepare_data"]


def _features(
    frame: pd.DataFrame,
    input_col: str,
    featurizer: EcfpFeaturizer | ColumnsFeaturizer,
    where: str,
) -> torch.Tensor:
    if isinstance(featurizer, ColumnsFeaturizer):
        cols = [label_array(frame, c, where) for c in featurizer.columns]
        x = np.stack(cols, axis=1)
        if np.isnan(x).any():
            raise PolytaskError(f"{where}: feature columns contain empty cells")
        return torch.from_numpy(x)
    smiles = frame[input_col].astype(str).tolist()
    return torch.from_numpy(
        ecfp(smiles, featurizer.radius, featurizer.bits, where=where).astype(np.float32)
    )


def _smiles(smiles: list[str] | None, where: str) -> list[str]:
    if smiles is None:
        raise PolytaskError(f"{where}: data.modalities need a SMILES input column")
    return smiles


def make_task(tc: TaskConfig) -> Task:
    return Task(
        tc.name,
        tc.kind,
        num_classes=tc.num_classes,
        loss=tc.loss,
        metric_names=tuple(tc.metrics),
        weight=tc.weight,
    )


def _targets(frame: pd.DataFrame, tasks: list[TaskConfig], where: str) -> dict[str, torch.Tensor]:
    out = {}
    for tc in tasks:
        make_task(tc)  # kind, loss and num_classes are checked before the labels
        if tc.kind == "multilabel":
            cols = tc.columns or []
            if len(cols) < 2:
                raise PolytaskError(
                    f"{where}: multilabel task {tc.name!r} needs 'columns' with at least 2 label columns"
                )
            read_table_cols = [label_array(frame, c, where, "multilabel") for c in cols]
            out[tc.name] = torch.from_numpy(np.stack(read_table_cols, axis=1))
        else:
            y = label_array(frame, tc.column or tc.name, where, tc.kind, tc.num_classes)
            out[tc.name] = torch.from_numpy(y)
    return out


def _check_labels(taskset: TaskSet, train: SplitData, where: str) -> None:
    for t in taskset.tasks:
        data = train if isinstance(train, TensorData) else train[t.name]
        if data.labelled(t.name) == 0:
            raise PolytaskError(
                f"{where}: task {t.name!r} has no labelled rows in the training split (all labels missing)"
            )


def prepare_data(config: TrainConfig, base: Path) -> PreparedData:
    """Load, featurise and split the data of ``config``; paths relative to ``base``.

    Auxiliary (self-supervised) tasks are appended to the task set with their pretexts.
    """
    prepared = _standardized(config, _prepare_labelled(config, base))
    if not config.auxiliary:
        return prepared

    return attach_auxiliary(config.auxiliary, config.seed, prepared)


def _standardized(config: TrainConfig, prepared: PreparedData) -> PreparedData:
    """``data.standardize``: columns features and regression targets in train-split units."""
    data = config.data
    if not isinstance(data, TableData | PerTaskData):
        return prepared
    columns = isinstance(data.featurizer, ColumnsFeaturizer) and not data_modalities(data)
    features = data.standardize.features and columns
    targets = data.standardize.targets and any(
        t.kind == "regression" for t in prepared.taskset.tasks
    )
    if not (features or targets):
        return prepared
    splits, stats = fit_standardization(prepared.taskset, prepared.splits, features, targets)
    info = {**prepared.info, STANDARDIZE: stats}
    return replace(prepared, splits=splits, info=info)


def _prepare_labelled(config: TrainConfig, base: Path) -> PreparedData:
    data = config.data
    if isinstance(data, ImageData):  # Fashion-MNIST / digits, see polytask.config.images
        image_tasks, image_splits, image_info = prepare_images(data, config.tasks, make_task)
        check_split_labels(image_tasks, image_splits, f"data (source {data.source})")
        return PreparedData(image_tasks, image_splits, False, image_info)
    if isinstance(data, PerTaskData):
        return _per_task(config, data, base)
    if isinstance(data, Tox21Data):
        where = "tox21 (bundled)"
        names = data.tasks or list(TOX21_TASKS)
        unknown = [n for n in names if n not in TOX21_TASKS]
        if unknown:
            raise PolytaskError(
                f"data.tasks: unknown Tox21 task(s) {unknown}; valid: {', '.join(TOX21_TASKS)}"
            )
        tasks = config.tasks or [TaskConfig(name=n, kind="binary") for n in names]
        frame = read_table(tox21_path(), ["smiles", *split_columns(data.split)])
        smiles: list[str] | None = load_tox21()[0]
        input_col, split_cfg, featurizer = "smiles", data.split, data.featurizer
    else:
        assert isinstance(data, TableData)
        tasks, frame, where = _table(config, data, base)
        smiles = frame[data.input].astype(str).tolist() if data.input in frame.columns else None
        input_col, split_cfg, featurizer = data.input, data.split, data.featurizer
    taskset = TaskSet(make_task(tc) for tc in tasks)
    mods = data_modalities(data)
    x = modal_inputs(mods, _smiles(smiles, where), where) if mods else None
    many = isinstance(data, TableData) and data.label_columns is not None
    full = TensorData(
        x if x is not None else _features(frame, input_col, featurizer, where),
        label_targets(frame, tasks, where) if many else _targets(frame, tasks, where),
        name=where,
    )
    split = make_split(split_cfg, len(full), smiles, frame, base, where)
    splits: dict[str, SplitData] = {
        k: full.select(torch.from_numpy(v)) for k, v in split.items() if len(v)
    }
    for k in ("train", "test"):  # no val rows: train/test only, the last step is kept
        if k not in splits:
            raise PolytaskError(f"{where}: data.split: the {k} split is empty")
    splits = standardize(splits, mods) if mods else splits  # train-split statistics only
    _check_labels(taskset, splits["train"], where)
    info: dict[str, object] = {
        "source": data.source,
        "split": split_cfg.model_dump(),
        "sizes": {k: len(v) for k, v in split.items()},
    }
    return attach_modal(config.multimodal, mods, PreparedData(taskset, splits, False, info))


def _table(
    config: TrainConfig, data: TableData, base: Path
) -> tuple[list[TaskConfig], pd.DataFrame, str]:
    """The tasks of a ``table`` source (listed, or from ``label_columns``), its frame, its path."""
    path = (base / data.path).resolve()
    where = str(path)
    inputs = (
        data.featurizer.columns if isinstance(data.featurizer, ColumnsFeaturizer) else [data.input]
    ) + split_columns(data.split)
    if data.label_columns is not None:
        if config.tasks:  # checked before the table is read
            raise PolytaskError(
                f"{where}: key 'tasks': data.label_columns declares the tasks; change single "
                "ones under data.label_columns.overrides (by column name)"
            )
        frame = read_table(path, inputs)
        columns = [str(c) for c in frame.columns]
        reserved = reserved_columns(data) + split_columns(data.split)
        tasks = expand_tasks(data.label_columns, columns, reserved, where)
        return tasks, frame, where
    if not config.tasks:
        raise PolytaskError(
            f"{where}: a 'table' data source needs a 'tasks' list naming the label columns "
            "(or data.label_columns)"
        )
    labels = [c for tc in config.tasks for c in (tc.columns or [tc.column or tc.name])]
    return config.tasks, read_table(path, [*inputs, *labels]), where


def _task_table(
    data: PerTaskData, ds: TaskTable, tc: TaskConfig, base: Path
) -> tuple[TensorData, dict[str, np.ndarray]]:
    """One task's table: its rows and their split. With ``columns`` features the input column
    is read only when it is there (a scaffold split needs it)."""
    path = (base / ds.path).resolve()
    where = str(path)
    columns = isinstance(data.featurizer, ColumnsFeaturizer)
    inputs = data.featurizer.columns if isinstance(data.featurizer, ColumnsFeaturizer) else []
    frame = read_table(
        path, [*([] if columns else [ds.input]), *inputs, ds.label, *split_columns(data.split)]
    )
    full = TensorData(
        _features(frame, ds.input, data.featurizer, where), _targets(frame, [tc], where), where
    )
    smiles = frame[ds.input].astype(str).tolist() if ds.input in frame.columns else None
    split = make_split(data.split, len(full), smiles, frame, base, where)
    for k in ("train", "test"):
        if not len(split[k]):
            raise PolytaskError(f"{where}: the {k} split of task {ds.task!r} is empty")
    return full, split


def _per_task(config: TrainConfig, data: PerTaskData, base: Path) -> PreparedData:
    declared = {tc.name: tc for tc in config.tasks or []}
    tasks = []
    splits: dict[str, dict[str, TensorData]] = {"train": {}, "val": {}, "test": {}}
    sizes = {}
    for ds in data.datasets:
        tc = declared.get(ds.task)
        if tc is None:
            raise PolytaskError(f"data.datasets: task {ds.task!r} is not declared under 'tasks'")
        tc = tc.model_copy(update={"column": ds.label})
        tasks.append(tc)
        full, split = _task_table(data, ds, tc, base)
        for k in splits:
            if len(split[k]):
                splits[k][ds.task] = full.select(torch.from_numpy(split[k]))
        sizes[ds.task] = {k: len(v) for k, v in split.items()}
    if 0 < len(splits["val"]) < len(tasks):
        none = [t.name for t in tasks if t.name not in splits["val"]]
        raise PolytaskError(
            f"data.split: task(s) {none} have no val rows while other tasks have some; give "
            "every task val rows or none (train/test only)"
        )
    if not splits["val"]:
        del splits["val"]  # train/test only: the last step is kept
    extra = sorted(set(declared) - {t.name for t in tasks})
    if extra:
        raise PolytaskError(
            f"tasks: {extra} declared but no dataset under data.datasets feeds them"
        )
    taskset = TaskSet(make_task(tc) for tc in tasks)
    _check_labels(taskset, splits["train"], "data.datasets")
    widths = {
        int(d.inputs.shape[1])
        for d in splits["train"].values()
        if isinstance(d.inputs, torch.Tensor)
    }
    if len(widths) != 1:
        raise PolytaskError(
            f"data.datasets: the tasks' inputs have different widths {sorted(widths)}; one trunk needs one"
        )
    info: dict[str, object] = {
        "source": "per_task",
        "split": data.split.model_dump(),
        "sampler": data.sampler.model_dump(),
        "sizes": sizes,
    }
    return PreparedData(taskset, dict[str, SplitData](splits), True, info)
