"""Reproducible splits: seeded random and Bemis–Murcko scaffold splits (80/10/10 by default),
splits read from a column or from index files, and k-fold partitions.

A split is ``{"train": rows, "val": rows, "test": rows}`` (sorted int64 row indices); ``val``
may be empty (train/test without validation).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polytask._core import PolytaskError, require

Split = dict[str, np.ndarray]

SPLIT_NAMES = ("train", "val", "test")


def _check(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise PolytaskError(
            f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}"
        )
    return float(fractions[0]), float(fractions[1]), float(fractions[2])


def random_split(n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Shuffle ``range(n)`` with ``seed`` and cut it into train/val/test by ``fractions``."""
    f_train, f_val, _ = _check(fractions)
    perm = np.random.default_rng(seed).permutation(n)
    n_train = round(f_train * n)
    n_val = round(f_val * n)
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def murcko_scaffold(smiles: str) -> str:
    """The Bemis–Murcko scaffold SMILES of a molecule ('' for acyclic or unparsable ones)."""
    scaffolds = require("rdkit.Chem.Scaffolds.MurckoScaffold", extra="chem")
    try:
        return str(scaffolds.MurckoScaffoldSmiles(smiles=smiles, includeChirality=False))
    except (ValueError, RuntimeError):
        return ""


def scaffold_split(smiles: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    """Deterministic scaffold split: scaffold groups, largest first, fill train, then val, then test.

    Molecules sharing a scaffold always land in the same split, so test scaffolds are unseen in
    training (the MoleculeNet / chemprop convention).
    """
    f_train, f_val, _ = _check(fractions)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(smiles):
        groups[murcko_scaffold(s)].append(i)
    ordered = sorted(groups.values(), key=lambda g: (-len(g), g[0]))
    n = len(smiles)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for g in ordered:
        if len(train) + len(g) <= f_train * n:
            train += g
        elif len(val) + len(g) <= f_val * n:
            val += g
        else:
            test += g
    return {
        k: np.sort(np.asarray(v, dtype=np.int64))
        for k, v in (("train", train), ("val", val), ("test", test))
    }


def column_split(values: Sequence[object], where: str) -> Split:
    """The split named by each row's value (``train``, ``val`` or ``test``; ``val`` may be absent).

    >>> {k: v.tolist() for k, v in column_split(["train", "test", "train", "val"], "t").items()}
    {'train': [0, 2], 'val': [3], 'test': [1]}
    """
    names = np.asarray([str(v).strip() if v == v and v is not None else "" for v in values])
    unknown = ~np.isin(names, SPLIT_NAMES)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise PolytaskError(
            f"{where}: row {row}: split value {str(names[row])!r} is not one of train, val, test"
        )
    split = {k: np.flatnonzero(names == k).astype(np.int64) for k in SPLIT_NAMES}
    for k in ("train", "test"):
        if not len(split[k]):
            raise PolytaskError(f"{where}: no row has split value {k!r}; the {k} split is empty")
    return split


def read_indices(path: str | Path, n: int) -> np.ndarray:
    """Row indices from ``path``: one integer per line (blank lines skipped) or a JSON list.

    Every index must be in ``[0, n)`` and appear once; errors name the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolytaskError(f"{path}: cannot read the split index file ({exc})") from None
    if text.lstrip().startswith("["):
        try:
            items = [(i + 1, v) for i, v in enumerate(json.loads(text))]
        except ValueError as exc:
            raise PolytaskError(f"{path}: not a JSON list of row indices ({exc})") from None
        unit = "item"
    else:
        items = [(i + 1, v.strip()) for i, v in enumerate(text.splitlines()) if v.strip()]
        unit = "line"
    rows = []
    for at, v in items:
        try:
            if isinstance(v, bool) or float(v) != int(v):  # 1.5, true: not a row index
                raise ValueError
            row = int(v)
        except (TypeError, ValueError):
            raise PolytaskError(f"{path}: {unit} {at}: {v!r} is not a row index") from None
        if not 0 <= row < n:
            raise PolytaskError(
                f"{path}: {unit} {at}: row index {row} is outside the table's rows 0..{n - 1}"
            )
        rows.append(row)
    out = np.asarray(rows, dtype=np.int64)
    uniq, counts = np.unique(out, return_counts=True)
    if (counts > 1).any():
        raise PolytaskError(f"{path}: row index {int(uniq[counts > 1][0])} is listed twice")
    return np.sort(out)


def index_split(files: dict[str, str | Path | None], n: int) -> Split:
    """The split given by one index file per split (``val`` may be None: no validation).

    A row in two splits is an error (it would leak between training and evaluation).
    """
    split = {k: np.zeros(0, dtype=np.int64) for k in SPLIT_NAMES}
    owner: dict[int, str] = {}
    for k in SPLIT_NAMES:
        path = files.get(k)
        if path is None:
            continue
        split[k] = read_indices(path, n)
        if not len(split[k]):
            raise PolytaskError(f"{path}: the {k} split is empty")
        for row in split[k].tolist():
            if row in owner:
                raise PolytaskError(
                    f"{path}: row {row} is in both the {owner[row]} and the {k} split"
                )
            owner[row] = k
    return split


def kfold_split(n: int, folds: int, fold: int, seed: int = 0, val_fraction: float = 0.0) -> Split:
    """Fold ``fold`` of a seeded ``folds``-fold partition of ``range(n)`` as the test split.

    The other folds train; with ``val_fraction > 0`` that share of them (seeded) is the
    validation split. The test splits of folds ``0..folds-1`` partition the rows.

    >>> [kfold_split(5, 2, f)["test"].tolist() for f in (0, 1)]
    [[2, 3, 4], [0, 1]]
    """
    if not 2 <= folds <= n:
        raise PolytaskError(f"data.split: {folds} folds need 2 <= folds <= rows ({n})")
    if not 0 <= fold < folds:
        raise PolytaskError(f"data.split: fold {fold} is not in 0..{folds - 1}")
    parts = np.array_split(np.random.default_rng(seed).permutation(n), folds)
    test = parts[fold]
    rest = np.concatenate([p for i, p in enumerate(parts) if i != fold])
    n_val = round(val_fraction * len(rest))
    rest = np.random.default_rng([seed, fold]).permutation(rest)
    return {
        "train": np.sort(rest[n_val:]),
        "val": np.sort(rest[:n_val]),
        "test": np.sort(test),
    }
