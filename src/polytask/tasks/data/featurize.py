"""Molecule featurisation: RDKit Morgan (ECFP) bit vectors, cached on disk.

The cache key is a hash of the SMILES list, radius, size and RDKit version, so a cached file is
never reused for different inputs. Files are written atomically. The cache folder is
``$POLYTASK_CACHE`` or ``~/.cache/polytask``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polytask._core import PolytaskError, atomic_path, require


def cache_dir() -> Path:
    return Path(os.environ.get("POLYTASK_CACHE", Path.home() / ".cache" / "polytask"))


def parse_smiles(chem: object, smiles: str) -> object:
    """Parse with full sanitisation; fall back to a partial one for valence quirks.

    A few MoleculeNet SMILES (e.g. hypervalent aluminium in Tox21) fail RDKit's strict valence
    check; their connectivity is still well defined, so Morgan environments are computed on the
    unsanitised graph after ring perception.
    """
    mol = chem.MolFromSmiles(smiles)  # type: ignore[attr-defined]
    if mol is not None:
        return mol
    mol = chem.MolFromSmiles(smiles, sanitize=False)  # type: ignore[attr-defined]
    if mol is None:
        return None
    mol.UpdatePropertyCache(strict=False)
    chem.GetSymmSSSR(mol)  # type: ignore[attr-defined]
    return mol


def ecfp(
    smiles: Sequence[str],
    radius: int = 2,
    n_bits: int = 2048,
    *,
    where: str = "smiles",
    cache: bool = True,
) -> np.ndarray:
    """Morgan fingerprints ``[N, n_bits]`` (uint8 0/1); ECFP4 is ``radius=2``.

    Raises a one-line error naming the row of the first SMILES RDKit cannot parse.
    """
    rdkit = require("rdkit", extra="chem")
    key = hashlib.sha256(
        "\n".join([rdkit.__version__, str(radius), str(n_bits), *smiles]).encode()
    ).hexdigest()[:24]
    path = cache_dir() / "ecfp" / f"{key}.npy"
    if cache and path.exists():
        try:
            return np.unpackbits(np.load(path, allow_pickle=False), axis=1, count=n_bits)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # corrupt cache entry: recompute
    chem = require("rdkit.Chem", extra="chem")
    gen_mod = require("rdkit.Chem.rdFingerprintGenerator", extra="chem")
    require("rdkit.RDLogger", extra="chem").DisableLog("rdApp.*")
    gen = gen_mod.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    for i, s in enumerate(smiles):
        mol = parse_smiles(chem, s)
        if mol is None:
            raise PolytaskError(f"{where}: row {i}: RDKit cannot parse SMILES {s!r}")
        out[i] = gen.GetFingerprintAsNumPy(mol)
    if cache:
        with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.packbits(out, axis=1), allow_pickle=False)
    return out
