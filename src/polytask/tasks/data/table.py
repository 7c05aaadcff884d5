"""Reading labelled tables (CSV/TSV, optionally gzipped) with clear errors.

Empty cells are missing labels and become NaN; they are never read as 0.
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


def label_array(frame: pd.DataFrame, column: str, where: str) -> np.ndarray:
    """Column ``column`` as float32 with NaN for empty cells; non-numeric cells are an error."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bool(bad.any()):
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise PolytaskError(
            f"{where}: column {column!r} row {row}: not a number: {frame[column].iloc[row]!r}"
        )
    return values.to_numpy(dtype=np.float32)
