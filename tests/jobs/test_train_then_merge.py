"""Train per task, merge the trunks, evaluate the merge in the same report as joint training."""

import json

import pytest
import yaml
from safetensors.torch import load_file

from polytask.cli.main import main
from tests.conftest import REPO, small_tox21


def test_single_task_trunks_merge_and_evaluate(tmp_path, capsys):
    cfg = small_tox21(tmp_path, steps=20)
    single = tmp_path / "single"
    assert main(["train", str(cfg), "--out", str(single), "--single-task", "--no-progress"]) == 0
    base = load_file(str(single / "base" / "trunk.safetensors"))
    trunks = {
        t: load_file(str(single / "single" / t / "trunk.safetensors"))
        for t in ("NR-AhR", "SR-ARE", "SR-MMP")
    }
    assert all(k.startswith("trunk.") for k in base) and all(
        t.keys() == base.keys() for t in trunks.values()
    )
    assert all(not t["trunk.0.weight"].equal(base["trunk.0.weight"]) for t in trunks.values())

    example = yaml.safe_load((REPO / "examples" / "merge" / "tox21_ties.yaml").read_text())
    example["base_model"] = str(single / "base" / "trunk.safetensors")
    example["models"] = [str(single / "single" / t / "trunk.safetensors") for t in trunks]
    merge_cfg = tmp_path / "merge.yaml"
    merge_cfg.write_text(yaml.safe_dump(example))
    assert main(["merge", str(merge_cfg), "--out", str(tmp_path / "merged")]) == 0

    # one task's own trunk with its own head reproduces that task's single-task metrics exactly
    assert (
        main(
            [
                "eval",
                str(single),
                "--trunk",
                str(single / "single" / "SR-MMP" / "trunk.safetensors"),
                "--out",
                str(tmp_path / "own.json"),
            ]
        )
        == 0
    )
    own = json.loads((tmp_path / "own.json").read_text())
    ref = json.loads((single / "report.json").read_text())
    assert own["metrics"]["test"]["SR-MMP"] == ref["metrics"]["test"]["SR-MMP"]

    report_path = tmp_path / "merged.json"
    args = [
        "eval",
        str(single),
        "--trunk",
        str(tmp_path / "merged"),
        "--baseline",
        str(single / "report.json"),
        "--out",
        str(report_path),
    ]
    assert main(args) == 0
    merged = json.loads(report_path.read_text())
    assert merged["mode"] == "merged" and set(merged["metrics"]["test"]) == set(trunks)
    assert merged["comparison"]["test"]["delta_m"] is not None
    assert 0.0 < merged["means"]["test"]["roc_auc"] < 1.0
    ties = load_file(str(next((tmp_path / "merged").glob("*.safetensors"))))
    assert ties.keys() == base.keys() and all(
        not ties["trunk.0.weight"].equal(t["trunk.0.weight"]) for t in trunks.values()
    )
    capsys.readouterr()
    with pytest.raises(AssertionError):
        assert main(["eval", str(single), "--trunk", str(tmp_path / "nothing")]) == 0
    assert "does not exist" in capsys.readouterr().err
