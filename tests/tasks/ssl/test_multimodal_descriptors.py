"""RDKit 2-D descriptors: known values, NaN safety, the on-disk cache, train-only standardising."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polytask._core import PolytaskError
from polytask.tasks.data.descriptors import Standardizer, descriptor_names, descriptors
from tests.conftest import needs

needs("rdkit")


def test_known_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path))
    x = descriptors(["CCO", "c1ccccc1"], ["MolWt", "NumHDonors", "RingCount", "HeavyAtomCount"])
    assert x[0].tolist() == pytest.approx([46.069, 1, 0, 3], abs=1e-3)
    assert x[1].tolist() == pytest.approx([78.114, 0, 1, 6], abs=1e-3)
    assert x.dtype == np.float64
    files = list((tmp_path / "descriptors").glob("*.npy"))
    assert len(files) == 1  # cached, atomically (no temp file left)
    assert not [p for p in (tmp_path / "descriptors").iterdir() if p.suffix != ".npy"]
    np.save(files[0], np.full((2, 4), 7.0))  # a cached entry is what is returned
    again = descriptors(["CCO", "c1ccccc1"], ["MolWt", "NumHDonors", "RingCount", "HeavyAtomCount"])
    assert (again == 7.0).all()
    files[0].write_bytes(b"not numpy")  # corrupt entry: recomputed
    fixed = descriptors(["CCO", "c1ccccc1"], ["MolWt", "NumHDonors", "RingCount", "HeavyAtomCount"])
    assert fixed[0, 0] == pytest.approx(46.069, abs=1e-3)


def test_full_list_is_nan_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path))
    names = descriptor_names()
    assert len(names) > 200 and "MolWt" in names and "TPSA" in names
    # a hypervalent-aluminium SMILES from Tox21 that only parses with partial sanitisation
    x = descriptors(["CCO", "[Cl-].[Cl-].[Cl-].[Al+3]", "[H]"], cache=False)
    assert x.shape == (3, len(names))
    assert not np.isinf(x).any()


def test_errors() -> None:
    with pytest.raises(PolytaskError, match="unknown RDKit descriptor"):
        descriptors(["CCO"], ["NotADescriptor"], cache=False)
    with pytest.raises(PolytaskError, match="row 1: RDKit cannot parse"):
        descriptors(["CCO", "C1CC("], ["MolWt"], cache=False)


def test_standardizer_uses_training_rows_only() -> None:
    train = np.array([[1.0, 10.0, 0.0], [3.0, np.nan, 0.0], [2.0, 30.0, 0.0]])
    test = np.array([[1000.0, 20.0, 5.0], [np.nan, np.inf, 0.0]])
    s = Standardizer.fit(train, clip=4.0)
    assert s.mean.tolist() == pytest.approx([2.0, 20.0, 0.0])
    assert s.std.tolist() == pytest.approx([np.sqrt(2 / 3), 10.0, 1.0])
    z = s(test)
    assert z.dtype == np.float32
    assert z.tolist() == [[4.0, 0.0, 4.0], [0.0, 0.0, 0.0]]  # clipped; NaN/Inf -> 0
    # fitting on train+test would change the statistics: the test rows are not used
    assert not np.allclose(Standardizer.fit(np.vstack([train, test])).mean, s.mean)
    with pytest.raises(PolytaskError, match="fitted on 3 columns"):
        s(np.zeros((1, 2)))
