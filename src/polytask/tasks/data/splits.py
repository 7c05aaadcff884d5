"""Reproducible splits: seeded random and Bemis–Murcko scaffold splits (80/10/10 by default)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from polytask._core import PolytaskError, require

Split = dict[str, np.ndarray]


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
