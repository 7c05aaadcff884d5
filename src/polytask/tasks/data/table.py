"""Reading labelled tables (CSV/TSV, optionally gzipped) with clear errors.

Empty cells are missing labels and become NaN; they are never read as 0. Labels are checked
against their task's kind when they are read (:func:`check_labels`, the one check every data
source uses): binary and multi-label labels are 0 or 1, multiclass labels are class ids
``0 … num_classes - 1``, regression labels are finite. The first offending cell is named by
file, column and row (0-based, the header not counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from polytask._core import PolytaskError


def read_table(
    path: str | Path, columns: Sequence[str] | None = None, sep: str | None = None
) -> pd.DataFrame:
    """Read ``path`` (``.csv``, ``.tsv``, ``.gz`` variants); check that ``columns`` exist."""
    path = Path(path)
    if not path.is_file():
        raise PolytaskError(f"data file not found: {path}")
    if sep is None:
        sep = "\t" if ".tsv" in path.suffixes else ","
    try:
        frame = pd.read_csv(path, sep=sep, quoting=3 if sep == "\t" else 0, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, EOFError, OSError, ValueError) as exc:
        raise PolytaskError(
            f"{path}: unreadable table ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    if frame.empty:
        raise PolytaskError(f"{path}: the table has no rows")
    missing = [c for c in columns or () if c not in frame.columns]
    if missing:
        raise PolytaskError(
            f"{path}: column(s) {', '.join(map(repr, missing))} not found; columns are: {', '.join(map(str, frame.columns))}"
        )
    return frame


def label_array(
    frame: pd.DataFrame, column: str, where: str, kind: str | None = None, num_classes: int = 1
) -> np.ndarray:
    """Column ``column`` as float32 with NaN for empty cells; non-numeric cells are an error,
    and so are labels that do not fit ``kind`` (when given, see :func:`check_labels`)."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bool(bad.any()):
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise PolytaskError(
            f"{where}: column {column!r} row {row}: not a number: {frame[column].iloc[row]!r}"
        )
    out = values.to_numpy(dtype=np.float32)
    if kind is not None:
        check_labels(out[None], [column], [kind], where, [num_classes])
    return out


_RULES = {
    "binary": "a binary label must be 0 or 1",
    "multilabel": "a multi-label label must be 0 or 1",
    "multiclass": "a multiclass label must be a class id 0 … {last}",
    "regression": "a regression label must be a finite number",
}


def invalid_labels(values: np.ndarray, kind: str, num_classes: int = 1) -> np.ndarray:
    """Where ``values`` (NaN = missing, always allowed) do not fit a task of ``kind``.

    >>> invalid_labels(np.array([0, 1, np.nan, 2, 0.5, -1]), "binary").tolist()
    [False, False, False, True, True, True]
    >>> invalid_labels(np.array([0, 2, 3, 1.5]), "multiclass", 3).tolist()
    [False, False, True, True]
    """
    present = ~np.isnan(values)
    if kind in ("binary", "multilabel"):
        ok = (values == 0) | (values == 1)
    elif kind == "multiclass":
        ok = (values >= 0) & (values < num_classes) & (values == np.floor(values))
    elif kind == "regression":
        ok = np.isfinite(values)
    else:  # self-supervised kinds: targets are made by their pretext, not read
        return np.zeros(values.shape, dtype=bool)
    return present & ~ok


def _hint(values: np.ndarray, kind: str) -> str:
    """Why the column may be of another kind: a 0/1 kind given real values."""
    v = values[np.isfinite(values)]
    if kind in ("binary", "multilabel") and v.size and bool((v != np.floor(v)).any()):
        return f"; the column holds real values ({v.min():g} … {v.max():g}): kind 'regression'?"
    return ""


def check_labels(
    block: np.ndarray,
    columns: Sequence[str],
    kinds: Sequence[str],
    where: str,
    num_classes: Sequence[int] | None = None,
) -> None:
    """Refuse, in one line naming ``where``, the column and the row, the first label of the
    ``[K, N]`` ``block`` (row ``k`` is column ``columns[k]`` of a task of ``kinds[k]``) that
    does not fit its task's kind (:func:`invalid_labels`); columns are searched in order.

    >>> check_labels(np.array([[0.0, 1.0, 2.0]]), ["y"], ["binary"], "data.csv")
    Traceback (most recent call last):
    ...
    polytask._core.errors.PolytaskError: data.csv: column 'y' row 2: a binary label must be 0 or 1 (empty = missing), got 2
    """
    classes = list(num_classes) if num_classes is not None else [1] * len(kinds)
    bad = np.zeros(block.shape, dtype=bool)
    pairs = list(zip(kinds, classes, strict=True))
    for pair in set(pairs):
        rows = np.array([p == pair for p in pairs])
        bad[rows] = invalid_labels(block[rows], *pair)
    if not bad.any():
        return
    col = int(np.flatnonzero(bad.any(axis=1))[0])
    row = int(np.flatnonzero(bad[col])[0])
    kind = kinds[col]
    rule = _RULES[kind].format(last=classes[col] - 1)
    raise PolytaskError(
        f"{where}: column {columns[col]!r} row {row}: {rule} (empty = missing), got "
        f"{float(block[col, row]):g}{_hint(block[col], kind)}"
    )
