"""RDKit 2-D molecular descriptors, cached on disk, and a train-split standardiser.

:func:`descriptors` computes, for each SMILES, every descriptor of ``rdkit.Chem.Descriptors.
_descList`` (217 in RDKit 2026.09; the list is the installed RDKit's, so its version is part of
the cache key) or the ``names`` given — e.g. ``MolWt``, ``MolLogP``, ``TPSA``, ``NumHDonors``.
A descriptor RDKit fails on, or whose value is NaN or ±Inf, is stored as NaN: the raw matrix
is *NaN-safe* (never Inf) but not yet finite.

:class:`Standardizer` turns it into network inputs: fitted on the **training rows only** (the
caller passes ``x[train_idx]``; val/test rows never enter the statistics), it maps each column to
``z = (x − μ_train) / σ_train`` (``σ = 1`` for constant columns; μ and σ over the finite training
values of that column), replaces NaN by 0 (the training mean) and clips ``z`` to ``±clip``
(heavy-tailed descriptors such as ``Ipc`` reach 1e30).

The cache key is a hash of the SMILES list, the descriptor names and the RDKit version; files
are written atomically under ``$POLYTASK_CACHE/descriptors`` (default ``~/.cache/polytask``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polytask._core import PolytaskError, atomic_path, require
from polytask.tasks.data.featurize import cache_dir, parse_smiles


def descriptor_names() -> tuple[str, ...]:
    """Names of every RDKit 2-D descriptor of the installed RDKit, in ``_descList`` order."""
    desc = require("rdkit.Chem.Descriptors", extra="chem")
    return tuple(name for name, _ in desc._descList)


def _compute(mol: object, fns: Sequence[object]) -> np.ndarray:
    row = np.full(len(fns), np.nan, dtype=np.float64)
    for j, fn in enumerate(fns):
        try:
            v = float(fn(mol))  # type: ignore[operator]
        except Exception:  # RDKit raises many exception types on odd molecules
            continue
        if math.isfinite(v):
            row[j] = v
    return row


def descriptors(
    smiles: Sequence[str],
    names: Sequence[str] | None = None,
    *,
    where: str = "smiles",
    cache: bool = True,
) -> np.ndarray:
    """Raw descriptors ``[N, D]`` (float64; NaN where RDKit fails or the value is not finite).

    >>> round(float(descriptors(["CCO"], ["MolWt"], cache=False)[0, 0]), 2)
    46.07

    Raises a one-line error for an unknown descriptor name or a SMILES RDKit cannot parse.
    """
    rdkit = require("rdkit", extra="chem")
    desc = require("rdkit.Chem.Descriptors", extra="chem")
    table = dict(desc._descList)
    chosen = tuple(names) if names is not None else tuple(table)
    unknown = [n for n in chosen if n not in table]
    if unknown or not chosen:
        raise PolytaskError(
            f"{where}: unknown RDKit descriptor(s) {unknown or '(none given)'}; "
            f"see rdkit.Chem.Descriptors._descList"
        )
    key = hashlib.sha256(
        "\n".join([rdkit.__version__, ",".join(chosen), *smiles]).encode()
    ).hexdigest()[:24]
    path = cache_dir() / "descriptors" / f"{key}.npy"
    if cache and path.exists():
        try:
            out = np.load(path, allow_pickle=False)
            if out.shape == (len(smiles), len(chosen)):
                return out
        except (OSError, ValueError):
            pass
        path.unlink(missing_ok=True)  # corrupt or stale cache entry: recompute
    chem = require("rdkit.Chem", extra="chem")
    require("rdkit.RDLogger", extra="chem").DisableLog("rdApp.*")
    fns = [table[n] for n in chosen]
    out = np.zeros((len(smiles), len(chosen)), dtype=np.float64)
    for i, s in enumerate(smiles):
        mol = parse_smiles(chem, s)
        if mol is None:
            raise PolytaskError(f"{where}: row {i}: RDKit cannot parse SMILES {s!r}")
        out[i] = _compute(mol, fns)
    if cache:
        with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, out, allow_pickle=False)
    return out


@dataclass(frozen=True)
class Standardizer:
    """Per-column ``z = clip((x − mean) / std, ±clip)``, NaN → 0; fitted on training rows only.

    >>> s = Standardizer.fit(np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0]]))
    >>> s.mean.tolist(), s.std.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    >>> s(np.array([[4.0, np.inf], [np.nan, 6.0]])).tolist()
    [[2.0, 0.0], [0.0, 1.0]]
    """

    mean: np.ndarray
    std: np.ndarray
    clip: float = 6.0

    @classmethod
    def fit(cls, train: np.ndarray, clip: float = 6.0) -> Standardizer:
        """Column statistics of ``train`` (the training split's rows; finite values only)."""
        if train.ndim != 2 or train.shape[0] == 0:
            raise PolytaskError(f"standardiser: needs a non-empty [N, D] matrix, got {train.shape}")
        if not clip > 0:
            raise PolytaskError(f"standardiser: clip must be > 0, got {clip}")
        x = np.where(np.isfinite(train), train, np.nan).astype(np.float64)
        seen = np.asarray(np.isfinite(x).any(axis=0), dtype=bool)
        with np.errstate(invalid="ignore"):
            safe = np.where(seen[None, :], x, 0.0)
            mean = np.nan_to_num(np.nanmean(safe, axis=0))
            std = np.nan_to_num(np.nanstd(safe, axis=0))
        std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
        return cls(mean, std, float(clip))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Standardised float32 copy of ``x`` (any rows; non-finite entries → 0)."""
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise PolytaskError(
                f"standardiser: fitted on {self.mean.shape[0]} columns, got shape {x.shape}"
            )
        with np.errstate(invalid="ignore", over="ignore"):
            z = (x.astype(np.float64) - self.mean) / self.std
        z = np.where(np.isfinite(z), z, 0.0)
        return np.clip(z, -self.clip, self.clip).astype(np.float32)
