"""Unlabeled SMILES: column detection, canonical dedup, invalid count, exclusion, real files."""

from __future__ import annotations

import gzip
import importlib.util

import pytest

from polytask.cli.main import main
from polytask.tasks.data.unlabeled import canonical, qm9_smiles, read_unlabeled_smiles
from tests.conftest import SHARED_DATA

from .conftest import edit, two_stages

MOLNET = SHARED_DATA / "moleculenet"


@pytest.mark.needs("rdkit")
def test_every_smiles_column_is_read_canonicalised_and_deduplicated(tmp_path):
    (tmp_path / "a.csv").write_text(
        "name,smiles,other_smiles,y\n"
        "ethanol,CCO,c1ccccc1,1\n"
        "ethanol again,OCC,C1=CC=CC=C1,0\n"  # same molecules, other spellings
        "broken,C1CC,CC(=O)O,1\n"  # unclosed ring: invalid
        "propane,CCC,,0\n"
        "butane,CCCC,,1\n"  # 4 of 5 cells parse: still a SMILES column (>= 80%)
    )
    with gzip.open(tmp_path / "b.csv.gz", "wt") as fh:
        fh.write("mol,label\nCCN,1\nCCO,0\nOC(=O)C,1\n")
    (tmp_path / "notes.txt").write_text("not a table\n")
    found = read_unlabeled_smiles([tmp_path], exclude=["C(C)N"])
    assert found.columns == {"a.csv": ["smiles", "other_smiles"], "b.csv.gz": ["mol"]}
    assert found.smiles == ["CCO", "CCC", "CCCC", "c1ccccc1", "CC(=O)O"]
    assert (found.read, found.invalid, found.duplicates, found.excluded) == (11, 1, 4, 1)
    assert canonical("C1CC") is None and canonical("OCC") == "CCO"


@pytest.mark.needs("rdkit")
def test_a_table_without_smiles_is_an_error(tmp_path):
    from polytask._core import PolytaskError

    (tmp_path / "x.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(PolytaskError, match=r"x.csv: no SMILES column found"):
        read_unlabeled_smiles([tmp_path / "x.csv"])


@pytest.mark.skipif(not MOLNET.is_dir(), reason="shared data not available")
@pytest.mark.needs("rdkit")
def test_real_files_find_their_smiles_columns():
    found = read_unlabeled_smiles(
        [MOLNET / "bace.csv", MOLNET / "freesolv.csv", MOLNET / "BBBP.csv"]
    )
    assert found.columns == {
        "bace.csv": ["mol"],
        "freesolv.csv": ["smiles"],
        "BBBP.csv": ["smiles"],
    }
    assert (found.read, found.invalid, found.duplicates, len(found.smiles)) == (4194, 0, 102, 4092)


@pytest.mark.slow
@pytest.mark.skipif(not MOLNET.is_dir(), reason="shared data not available")
@pytest.mark.needs("rdkit")
def test_the_whole_moleculenet_folder():
    found = read_unlabeled_smiles([MOLNET])
    assert len(found.columns) == 8
    assert (found.read, found.invalid, found.duplicates, len(found.smiles)) == (
        40617,
        8,
        3196,
        37413,
    )


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
@pytest.mark.needs("rdkit")
def test_qm9_smiles_from_qm9pack():
    smiles = qm9_smiles()
    assert len(smiles) == 130831 and smiles[:3] == ["C", "N", "O"]


def test_a_stage_on_unlabeled_data_with_supervised_tasks_is_refused(tmp_path, capsys):
    (tmp_path / "mols.csv").write_text("smiles\nCCO\nCCN\nCCC\nCCCC\n")

    def change(c):
        c["stages"][0]["data"] = {"source": "unlabeled_smiles", "paths": ["mols.csv"]}
        c["stages"][0]["tasks"] = [{"name": "NR-AhR"}]

    cfg = edit(two_stages(tmp_path), change)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert (
        "stages[0] 'pre': key 'tasks': unlabeled data has no labels for task(s) ['NR-AhR']" in err
    )


@pytest.mark.needs("rdkit")
def test_pretraining_on_unlabeled_smiles_then_fine_tuning(tmp_path):
    """Stage 1: masked-bit reconstruction on unlabeled molecules (Tox21's val/test ones left out);
    stage 2: fine-tune on Tox21 from the pre-trained trunk."""
    from polytask.build.unlabeled import heldout_smiles
    from polytask.config.schema import Tox21Data
    from polytask.tasks.data import load_tox21

    smiles = load_tox21()[0]
    held = heldout_smiles(Tox21Data(), tmp_path)
    leaked = [s for s in smiles[:200] if s in held]
    assert leaked  # the first 200 Tox21 molecules include some of the val/test split
    (tmp_path / "mols.csv").write_text("smiles\n" + "\n".join(smiles[:200]) + "\n")

    def change(c):
        c["stages"][0]["data"] = {
            "source": "unlabeled_smiles",
            "paths": ["mols.csv"],
            "featurizer": {"kind": "ecfp", "bits": 256},
            "val_fraction": 0.1,
        }
        c["stages"][0]["auxiliary"] = [
            {"name": "recon", "pretext": "masked_features", "mask_ratio": 0.2}
        ]

    cfg = edit(two_stages(tmp_path), change)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    import json

    pre = json.loads((tmp_path / "run" / "stages" / "pre" / "report.json").read_text())
    counts = pre["data"]["unlabeled"]
    assert counts["excluded"] == len({canonical(s) for s in leaked} - {None})
    assert (
        counts["molecules"] + counts["excluded"] + counts["duplicates"] + counts["invalid"] == 200
    )
    assert [t["name"] for t in pre["tasks"]] == ["recon"]
    assert set(pre["metrics"]["test"]["recon"]) >= {"rmse"}
    final = json.loads((tmp_path / "run" / "report.json").read_text())
    assert final["loaded"] == {"from": "pre", "what": "trunk", "heads": []}
