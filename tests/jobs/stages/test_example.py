"""The multi-stage example config runs end to end (with a tiny budget)."""

from __future__ import annotations

import json

import pytest
import yaml

from polytask.cli.main import main
from tests.conftest import REPO

pytestmark = pytest.mark.needs("rdkit")

EXAMPLE = REPO / "examples" / "stages" / "tox21_pretrain_finetune.yaml"


def test_tox21_pretrain_finetune_example_runs(tmp_path):
    cfg = yaml.safe_load(EXAMPLE.read_text())
    for stage in cfg["stages"]:
        stage.pop("epochs")
        stage["steps"] = 3
    cfg["model"]["trunk"]["hidden"] = [64]  # the recipe as written, on a smaller trunk
    path = tmp_path / "example.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["pretrain", "finetune"]
    assert [t["name"] for t in report["tasks"]] == ["SR-ATAD5", "SR-HSE", "SR-p53"]
    assert report["loaded"] == {"from": "pretrain", "what": "trunk", "heads": []}
    pre = json.loads((tmp_path / "run" / "stages" / "pretrain" / "run.json").read_text())
    assert {t["weight"] for t in pre["config"]["tasks"]} == {1.4426950408889634}  # 1 / ln 2
    assert len(pre["config"]["tasks"]) == 9
    fine = json.loads((tmp_path / "run" / "stages" / "finetune" / "run.json").read_text())
    assert fine["config"]["train"]["optimizer"]["lr"] == 0.0003
    assert report["training"]["steps"] == 3


def test_unlabeled_pretraining_example_runs(tmp_path):
    from polytask.tasks.data import load_tox21

    example = REPO / "examples" / "stages" / "tox21_unlabeled_pretrain.yaml"
    cfg = yaml.safe_load(example.read_text())
    for stage in cfg["stages"]:
        stage.pop("epochs")
        stage["steps"] = 2
    cfg["model"]["trunk"]["hidden"] = [32]
    (tmp_path / "molecules").mkdir()
    (tmp_path / "molecules" / "a.csv").write_text(
        "smiles\n" + "\n".join(load_tox21()[0][:300]) + "\n"
    )
    path = tmp_path / "example.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    pre = json.loads((tmp_path / "run" / "stages" / "pretrain" / "report.json").read_text())
    assert [t["name"] for t in pre["tasks"]] == ["recon", "views"]
    assert pre["data"]["unlabeled"]["excluded"] > 0  # Tox21 val/test molecules left out
    final = json.loads((tmp_path / "run" / "report.json").read_text())
    assert len(final["tasks"]) == 12 and final["loaded"]["from"] == "pretrain"
