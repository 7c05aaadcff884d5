"""Many tasks from one table: ``data.label_columns`` turns label columns into tasks.

::

    data:
      source: table
      path: assays.csv
      input: smiles
      label_columns:
        select: "assay_*"                       # or all, or a list of globs
        exclude: [assay_999]
        kind: binary                            # binary | regression
        overrides:                              # single tasks, by column name
          assay_017: {weight: 2.0}

Rules (each broken rule is one line naming the key and the column):

* ``select`` is ``all`` or a shell glob (:func:`fnmatch.fnmatchcase`: ``*``, ``?``, ``[abc]``;
  case-sensitive), or a list of globs (their union). Every glob must match some column.
* Never tasks: the input column (``data.input``) and feature columns (``featurizer.columns``).
* ``exclude`` globs remove columns; each must match some column of the table.
* Tasks follow the column order of the file. Each gets ``kind``, ``loss``, ``metrics`` and
  ``weight`` of ``label_columns``; ``overrides`` (keys left out or null inherit) changes single
  tasks and must name selected columns. A top-level ``tasks`` list is an error here (it would
  be a second, competing declaration of the same tasks).
* Labels are read in one block (``[N, K]`` float32, empty cells NaN), so the cost per column is
  a slice; a non-numeric cell, or a label that does not fit its task's kind (a binary label
  other than 0/1, a class id out of range, an infinite value), names its column and row.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

import numpy as np
import pandas as pd
import torch
from pandas.api.types import is_numeric_dtype

from polytask._core import PolytaskError
from polytask.config.schema import ColumnsFeaturizer, LabelColumns, TableData, TaskConfig
from polytask.tasks.data import label_array
from polytask.tasks.data.table import check_labels

KEY = "data.label_columns"
_SHOWN = 8  # columns listed in an error message


def _listing(columns: Sequence[str]) -> str:
    head = ", ".join(map(str, columns[:_SHOWN]))
    return f"{head}, … ({len(columns)} in all)" if len(columns) > _SHOWN else head


def reserved_columns(data: TableData) -> list[str]:
    """The columns that are never tasks: the input and the feature columns."""
    if isinstance(data.featurizer, ColumnsFeaturizer):
        return [data.input, *data.featurizer.columns]
    return [data.input]


def _globs(select: str | list[str]) -> list[str]:
    if isinstance(select, str):
        return ["*"] if select == "all" else [select]
    return list(select)


def select_columns(
    spec: LabelColumns, columns: Sequence[str], reserved: Sequence[str], where: str
) -> list[str]:
    """The selected label columns of a table with ``columns``, in file order."""
    names = [str(c) for c in columns]
    free = [c for c in names if c not in set(reserved)]
    for key, globs, pool in (
        ("select", _globs(spec.select), free),
        ("exclude", spec.exclude, names),
    ):
        for g in globs:
            if not any(fnmatchcase(c, g) for c in pool):
                what = "label column" if key == "select" else "column"
                raise PolytaskError(
                    f"{where}: key '{KEY}.{key}': {g!r} matches no {what} "
                    f"(columns: {_listing(names)})"
                )
    chosen = [
        c
        for c in free
        if any(fnmatchcase(c, g) for g in _globs(spec.select))
        and not any(fnmatchcase(c, g) for g in spec.exclude)
    ]
    if not chosen:
        raise PolytaskError(f"{where}: key '{KEY}.exclude': leaves no label column to train on")
    return chosen


def _why_not(name: str, columns: Sequence[str], reserved: Sequence[str], spec: LabelColumns) -> str:
    if name not in columns:
        return "is not a column of the table"
    if name in reserved:
        return "is the input or a feature column, never a task"
    hit = [g for g in spec.exclude if fnmatchcase(name, g)]
    if hit:
        return f"is excluded by {KEY}.exclude {hit[0]!r}"
    return f"is not selected by {KEY}.select"


def expand_tasks(
    spec: LabelColumns, columns: Sequence[str], reserved: Sequence[str], where: str
) -> list[TaskConfig]:
    """One task per selected column, in file order, with ``spec.overrides`` applied by name."""
    chosen = select_columns(spec, columns, reserved, where)
    index = set(chosen)
    names = [str(c) for c in columns]
    for name in spec.overrides:
        if name not in index:
            why = _why_not(name, names, reserved, spec)
            raise PolytaskError(f"{where}: key '{KEY}.overrides.{name}': column {name!r} {why}")
    base = spec.model_dump(include={"kind", "loss", "metrics", "weight"})
    out = []
    for c in chosen:
        over = spec.overrides.get(c)
        own = over.model_dump(exclude_none=True) if over is not None else {}
        out.append(TaskConfig.model_validate({"name": c, **base, **own}))
    return out


def label_targets(
    frame: pd.DataFrame, tasks: Sequence[TaskConfig], where: str
) -> dict[str, torch.Tensor]:
    """The label column of each task (``column`` = ``name``) as float32 with NaN for empty cells.

    Numeric columns are converted in one block; other columns go through
    :func:`~polytask.tasks.data.label_array`, whose error names the column and the row. Labels
    must fit their task's kind (:func:`~polytask.tasks.data.table.check_labels`).
    """
    names = [tc.name for tc in tasks]
    sub = frame[names]
    numeric = np.array([is_numeric_dtype(t) for t in sub.dtypes], dtype=bool)
    block = np.empty((len(names), len(frame)), dtype=np.float32)  # [K, N]: each task contiguous
    if numeric.any():
        block[numeric] = sub.loc[:, numeric].to_numpy(dtype=np.float32, na_value=np.nan).T
    for j in np.flatnonzero(~numeric):
        try:
            block[j] = label_array(frame, names[j], where)
        except PolytaskError as exc:
            raise PolytaskError(f"{exc}; leave the column out with {KEY}.exclude") from None
    try:
        check_labels(
            block, names, [tc.kind for tc in tasks], where, [tc.num_classes for tc in tasks]
        )
    except PolytaskError as exc:
        raise PolytaskError(
            f"{exc}; leave the column out with {KEY}.exclude or give it a kind under "
            f"{KEY}.overrides"
        ) from None
    return {n: torch.from_numpy(block[j]) for j, n in enumerate(names)}
