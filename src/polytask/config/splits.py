"""The ``data.split`` section: random or scaffold fractions, a split column, index files,
k-fold cross-validation and repeated random splits (see :mod:`polytask.build.splits`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

__all__ = [
    "ColumnSplit",
    "IndexSplit",
    "KFoldSplit",
    "RepeatedSplit",
    "Split",
    "SplitConfig",
    "Standardize",
    "split_kind",
]


class StrictModel(BaseModel):
    """A frozen config section that refuses unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(StrictModel):
    """Seeded random or scaffold split by ``fractions`` (train, val, test); a val fraction of 0
    trains on train and scores test, keeping the model of the last step."""

    kind: Literal["random", "scaffold"] = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0


class ColumnSplit(StrictModel):
    """The split named in a column of the table: ``train``, ``val`` or ``test`` per row (no
    ``val`` row: no validation, the model of the last step is kept)."""

    kind: Literal["column"]
    column: str = Field("split", min_length=1)


class IndexSplit(StrictModel):
    """Row indices (0-based, one per line or a JSON list) of each split, in files relative to
    the config; without ``val`` the model of the last step is kept."""

    kind: Literal["indices"]
    train: str = Field(min_length=1)
    val: str | None = None
    test: str = Field(min_length=1)


class KFoldSplit(StrictModel):
    """k-fold cross-validation: one run per fold (fold ``i`` tests, the others train; a
    ``val_fraction`` of the training folds validates, 0: the last step is kept), one report."""

    kind: Literal["kfold"]
    folds: int = Field(5, ge=2, le=100)
    seed: int = 0
    val_fraction: float = Field(0.1, ge=0, lt=1)
    fold: int | None = Field(None, ge=0)  # set per run by polytask train; None: every fold


class RepeatedSplit(StrictModel):
    """Repeated random splits: run ``r`` draws the ``fractions`` split with seed ``seed + r``."""

    kind: Literal["repeated"]
    repeats: int = Field(3, ge=2, le=100)
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    repeat: int | None = Field(None, ge=0)  # set per run by polytask train; None: every repeat


def split_kind(value: object) -> str:
    """The ``kind`` of a ``data.split`` section (``random`` when left out)."""
    if isinstance(value, dict):
        return str(value.get("kind", "random"))
    return str(getattr(value, "kind", "random"))


Split = Annotated[
    Annotated[SplitConfig, Tag("random")]
    | Annotated[SplitConfig, Tag("scaffold")]
    | Annotated[ColumnSplit, Tag("column")]
    | Annotated[IndexSplit, Tag("indices")]
    | Annotated[KFoldSplit, Tag("kfold")]
    | Annotated[RepeatedSplit, Tag("repeated")],
    Discriminator(split_kind),
]


class Standardize(StrictModel):
    """``data.standardize``: numeric ``columns`` features and regression targets mapped to
    ``(v − mean) / std`` with the training split's statistics (metrics are reported in the
    original units; see :mod:`polytask.build.standardize`)."""

    features: bool = True
    targets: bool = True
