"""``polytask train CONFIG --single-task`` works for every example config, with or without a
``balancing:`` section: one task has nothing to balance, so the section is left out (and the
report says so); a multi-stage recipe gives the baselines of its last stage's tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from polytask.jobs.train import run_train
from tests.conftest import REPO, SHARED_DATA

EXAMPLES = sorted((REPO / "examples").glob("*.yaml")) + sorted(
    (REPO / "examples" / "stages").glob("*.yaml")
)
TWO_TOX21 = ["NR-AhR", "SR-MMP"]

pytestmark = pytest.mark.needs("rdkit")  # every example featurizes SMILES


def _small(data: dict[str, Any], where: Path) -> dict[str, Any]:
    """The example on two tasks for two steps with narrow layers, its paths made absolute."""
    d = data.setdefault("data", {"source": "tox21"})
    if d.get("source", "tox21") == "tox21":
        d["tasks"] = TWO_TOX21
    if "featurizer" in d and d["featurizer"].get("kind") == "ecfp":
        d["featurizer"]["bits"] = 128
    trunk = data.setdefault("model", {}).setdefault("trunk", {})
    trunk.update(
        {"bottom": [32], "expert_hidden": [16]} if trunk.get("kind") == "moe" else {"hidden": [32]}
    )
    if d.get("source") == "table":
        d["path"] = str((where / d["path"]).resolve())
        d["label_columns"].update(select=["assay_00[12]"], overrides={})
    if d.get("source") == "per_task":
        for ds in d["datasets"]:
            ds["path"] = str((where / ds["path"]).resolve())
    data["train"] = {**data.get("train", {}), "steps": 2, "eval_every": 2}
    data["train"].pop("epochs", None)
    for stage in data.get("stages") or []:
        stage.pop("epochs", None)
        stage["steps"] = 2
        if stage.get("data", {}).get("source") == "tox21":
            stage["data"].update(tasks=TWO_TOX21, featurizer={"kind": "ecfp", "bits": 128})
        stage.pop("sampler", None)
    return data


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_single_task_runs_for_every_example_with_a_balancing_section(
    example: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(example.read_text())
    if data.get("data", {}).get("source") == "per_task" and not SHARED_DATA.exists():
        pytest.skip("shared data not available")
    data = _small(data, example.parent)
    data["balancing"] = {"method": "famo", "mode": "exact"}
    cfg = tmp_path / example.name
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "single"
    run_train(cfg, out, single_task=True, progress=False)  # what the CLI's --single-task calls
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "single-task"
    assert "no balancing" in report["balancing_dropped"]
    tasks = [t["name"] for t in report["tasks"] if not t["auxiliary"]]
    assert sorted(report["runs"]) == sorted(tasks) and len(tasks) >= 1
    for task in tasks:  # each task trained alone, its trunk saved for merging
        assert (out / "single" / task / "trunk.safetensors").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["single_task"] is True and run["config"]["balancing"] is None
