"""The ``data.split`` section → row indices of train, val and test (see
:mod:`polytask.tasks.data.splits`).

``val`` may be empty (a val fraction of 0, a split column without ``val`` rows, no ``val`` index
file): the run then trains on train, keeps the model of its last step and scores test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polytask._core import PolytaskError
from polytask.config.splits import (
    ColumnSplit,
    IndexSplit,
    KFoldSplit,
    RepeatedSplit,
    SplitConfig,
)
from polytask.tasks.data import random_split, scaffold_split
from polytask.tasks.data.splits import Split, column_split, index_split, kfold_split

SplitSpec = SplitConfig | ColumnSplit | IndexSplit | KFoldSplit | RepeatedSplit

__all__ = ["Split", "SplitSpec", "make_split", "split_columns"]


def split_columns(cfg: SplitSpec) -> list[str]:
    """The table columns the split reads (never features or tasks)."""
    return [cfg.column] if isinstance(cfg, ColumnSplit) else []


def make_split(
    cfg: SplitSpec,
    n: int,
    smiles: list[str] | None,
    frame: pd.DataFrame | None = None,
    base: Path | None = None,
    where: str = "data.split",
) -> Split:
    """Train/val/test rows of a table of ``n`` rows (``frame`` for a split column, ``base`` the
    folder index files are relative to)."""
    if isinstance(cfg, ColumnSplit):
        if frame is None or cfg.column not in frame.columns:
            raise PolytaskError(f"{where}: key 'data.split.column': no column {cfg.column!r}")
        return column_split(frame[cfg.column].tolist(), f"{where}: column {cfg.column!r}")
    if isinstance(cfg, IndexSplit):
        if base is None:
            raise PolytaskError(f"{where}: key 'data.split': index files need the config's folder")
        files = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
        return index_split({k: None if v is None else base / v for k, v in files.items()}, n)
    if isinstance(cfg, KFoldSplit):
        if cfg.fold is None:
            raise PolytaskError(
                f"{where}: key 'data.split.fold': a kfold split is one run per fold "
                "(polytask train runs them all); evaluate or load one fold's run folder "
                "(<run>/folds/fold-<i>), or set 'fold'"
            )
        return kfold_split(n, cfg.folds, cfg.fold, cfg.seed, cfg.val_fraction)
    if isinstance(cfg, RepeatedSplit):
        if cfg.repeat is None:
            raise PolytaskError(
                f"{where}: key 'data.split.repeat': repeated splits are one run per repeat "
                "(polytask train runs them all); evaluate or load one repeat's run folder "
                "(<run>/folds/repeat-<r>), or set 'repeat'"
            )
        return random_split(n, cfg.fractions, cfg.seed + cfg.repeat)
    if cfg.kind == "scaffold":
        if smiles is None:
            raise PolytaskError("data.split: a scaffold split needs a SMILES input column")
        return scaffold_split(smiles, cfg.fractions)
    return random_split(n, cfg.fractions, cfg.seed)
