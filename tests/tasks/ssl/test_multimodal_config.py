"""Multi-modal configs: a full run with masking, reconstruction and a mask ensemble; bad names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from polytask.build.data import prepare_data
from polytask.cli.main import main
from polytask.config.load import validate
from polytask.config.schema import TrainConfig
from tests.conftest import needs

needs("rdkit")

SMILES = [
    "CCO", "CCN", "CCC", "CCCl", "CCBr", "c1ccccc1", "c1ccccc1O", "c1ccccc1N", "CC(=O)O",
    "CC(=O)N", "CCCCO", "CCCCN", "OCCO", "NCCN", "c1ccncc1", "c1ccoc1", "C1CCCCC1", "C1CCNCC1",
    "CC(C)O", "CC(C)N", "CCOCC", "CCSCC", "FC(F)F", "ClCCl", "CC#N", "C=CC", "C#CC", "CCC(=O)O",
    "OC(=O)c1ccccc1", "Nc1ccc(O)cc1", "CCCCCC", "CCCCCCO", "CC(O)CO", "OCC(O)CO", "CNC", "CN(C)C",
    "c1ccc2ccccc2c1", "CC(=O)Oc1ccccc1C(=O)O", "CCN(CC)CC", "O=C1CCCCC1",
]  # fmt: skip
DESC = ["MolWt", "TPSA", "NumHDonors", "MolLogP"]


def _table(tmp_path: Path) -> Path:
    rows = [f"{s},{i % 2},{'' if i % 7 == 0 else (i // 2) % 2}" for i, s in enumerate(SMILES)]
    path = tmp_path / "mols.csv"
    path.write_text("smiles,a,b\n" + "\n".join(rows) + "\n")
    return path


def _config(tmp_path: Path, **extra: object) -> dict:
    _table(tmp_path)
    cfg: dict = {
        "data": {
            "source": "table",
            "path": "mols.csv",
            "split": {"kind": "random", "fractions": [0.6, 0.2, 0.2], "seed": 0},
            "modalities": {
                "ecfp": {"kind": "ecfp", "bits": 64},
                "desc": {"kind": "descriptors", "names": DESC},
            },
        },
        "tasks": [{"name": "a"}, {"name": "b"}],
        "model": {"trunk": {"hidden": [16], "dropout": 0.0}},
        "train": {"steps": 6, "batch_size": 8, "eval_every": 3},
        "multimodal": {
            "fusion": "mean",
            "post": [8],
            "masking": {"p": 0.4, "reconstruct": {"rec_desc": "desc"}},
            "ensemble": {"n": 4, "aggregation": "median"},
        },
    }
    cfg.update(extra)
    return cfg


def _write(tmp_path: Path, cfg: dict) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def test_multimodal_run_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "cache"))
    cfg = _write(tmp_path, _config(tmp_path))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    test = report["metrics"]["test"]
    assert set(test) == {"a", "b", "rec_desc"}
    assert "rmse" in test["rec_desc"] and "roc_auc" in test["a"]
    assert main(["eval", str(tmp_path / "run")]) == 0
    again = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert again["metrics"]["test"] == test  # the seeded mask ensemble scores the same twice


def test_descriptors_standardised_on_train_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "cache"))
    config = validate(TrainConfig, _config(tmp_path), "cfg")
    prepared = prepare_data(config, tmp_path)
    train, val = prepared.splits["train"], prepared.splits["val"]["a"]
    desc = train.inputs["desc"].numpy()
    assert desc.shape == (24, len(DESC)) and desc.dtype == np.float32
    assert np.abs(desc.mean(axis=0)).max() < 1e-5  # train rows: mean 0 ...
    assert np.allclose(desc.std(axis=0), 1.0, atol=1e-4)  # ... std 1 (no clipping here)
    assert np.abs(val.inputs["desc"].numpy().mean(axis=0)).max() > 1e-3  # val not re-fitted
    assert set(train.inputs) == {"ecfp", "desc"} and train.inputs["ecfp"].shape[1] == 64
    rec = prepared.splits["test"]["rec_desc"]
    assert set(rec.inputs) == {"ecfp"}  # reconstruction is scored with its modality missing
    assert prepared.taskset["rec_desc"].auxiliary


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"multimodal": {"masking": {"reconstruct": {"r": "graph"}}}},
            r"multimodal.masking.reconstruct.r': modality 'graph' is not in data.modalities \(ecfp, desc\)",
        ),
        (
            {"multimodal": {"ensemble": {"subsets": [["ecfp"], ["image"]]}}},
            r"multimodal.ensemble.subsets': \['image'\] names modality 'image'",
        ),
        (
            {"auxiliary": [{"name": "m", "pretext": "masked_features", "modality": "text"}]},
            r"auxiliary.0.modality': task 'm' names modality 'text'",
        ),
        ({"data": {"source": "tox21", "tasks": ["NR-AhR"]}}, r"'multimodal' needs 'modalities'"),
        ({"multimodal": {"fusion": "sum"}}, r"key 'multimodal.fusion'"),
    ],
)
def test_bad_modality_names_are_one_line_exit_2(tmp_path, capsys, change, needle) -> None:
    cfg = _write(tmp_path, _config(tmp_path, **change))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.search(needle, err[0]), err[0]


def test_featurizer_and_modalities_and_unknown_descriptor(tmp_path, capsys) -> None:
    cfg = _config(tmp_path)
    cfg["data"]["featurizer"] = {"kind": "ecfp", "bits": 64}
    assert main(["train", str(_write(tmp_path, cfg)), "--out", str(tmp_path / "r")]) == 2
    assert "give 'featurizer' or 'modalities', not both" in capsys.readouterr().err
    cfg = _config(tmp_path)
    cfg["data"]["modalities"]["desc"]["names"] = ["MolWt", "Nope"]
    assert main(["train", str(_write(tmp_path, cfg)), "--out", str(tmp_path / "r2")]) == 2
    assert "unknown RDKit descriptor(s) ['Nope']" in capsys.readouterr().err
