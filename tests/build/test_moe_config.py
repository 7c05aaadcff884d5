"""``model.trunk: {kind: moe}``: the schema, the built model, and the example end to end."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from safetensors.torch import load_file

from polytask._core import PolytaskError
from polytask.build.model import make_model
from polytask.cli.main import main
from polytask.config.load import validate
from polytask.config.schema import MoETrunkConfig, TrainConfig
from polytask.models import MoEHeads, MoELayout, MoETrunk
from polytask.tasks import Task, TaskSet
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "moe_tox21.yaml"
MOE = {"kind": "moe", "bottom": [8], "experts": 3, "expert_hidden": [6, 5], "dropout": 0.0}


def _config(trunk: dict, heads: dict | None = None) -> TrainConfig:
    model = {"trunk": trunk, **({"heads": heads} if heads else {})}
    return validate(TrainConfig, {"model": model, "train": {"steps": 1}}, "cfg.yaml")


def test_moe_trunk_kind_builds_moe_trunk_and_heads():
    cfg = _config(MOE, {"hidden": 4})
    assert isinstance(cfg.model.trunk, MoETrunkConfig)
    ts = TaskSet([Task("a", "binary"), Task("c", "multiclass", num_classes=3)])
    model = make_model(cfg.model, cfg.data, cfg.multimodal, ts, in_dim=12)
    assert isinstance(model.trunk, MoETrunk) and isinstance(model.heads, MoEHeads)
    assert model.trunk.layout == MoELayout(bottom_dim=8, num_experts=3, expert_dim=5)
    assert model.heads.hidden == 4 and model.heads.names == ("a", "c")
    assert model.heads.gate.weight.shape == (2 * 3, 8)
    assert model.heads.hidden_weight.shape == (2, 4, 5) and model.heads.weight.shape == (4, 4)
    defaults = _config({"kind": "moe"}).model.trunk
    assert isinstance(defaults, MoETrunkConfig)
    assert (defaults.bottom, defaults.experts, defaults.expert_hidden) == ([512], 4, [256])


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"experts": 0}, "model.trunk.experts"),
        ({"bottom": [0]}, "model.trunk.bottom.0"),
        ({"expert_hidden": []}, "model.trunk.expert_hidden"),
        ({"dropout": 1.0}, "model.trunk.dropout"),
        ({"hidden": [4]}, "model.trunk.hidden"),  # an mlp key on a moe trunk
    ],
)
def test_bad_moe_values_name_the_key(patch, key):
    with pytest.raises(PolytaskError, match=rf"cfg.yaml: key '{re.escape(key)}'"):
        _config({**MOE, **patch})


def test_moe_with_multimodal_inputs_is_a_one_line_error():
    data = {"source": "tox21", "modalities": {"ecfp": {"kind": "ecfp", "bits": 64}}}
    raw = {"data": data, "model": {"trunk": MOE}, "train": {"steps": 1}}
    with pytest.raises(  # refused on load, before any data is read
        PolytaskError, match=r"cfg\.yaml: key 'model\.trunk\.kind': 'moe' does not take multi-modal"
    ):
        validate(TrainConfig, raw, "cfg.yaml")


@pytest.mark.needs("rdkit")
def test_example_runs_end_to_end_with_features_balancing(tmp_path, capsys):
    data = yaml.safe_load(EXAMPLE.read_text())
    assert data["model"]["trunk"]["kind"] == "moe"
    tasks = ["NR-AhR", "SR-ARE", "SR-MMP"]
    data["data"].update(tasks=tasks, featurizer={"kind": "ecfp", "bits": 128})
    data["model"]["trunk"].update(bottom=[32], expert_hidden=[16])
    data["train"].pop("epochs")
    data["train"].update(steps=8, eval_every=4, batch_size=64)
    data["balancing"] = {"method": "upgrad", "mode": "features"}
    cfg = tmp_path / "moe.yaml"
    cfg.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--no-progress"]) == 0
    report = json.loads((run / "report.json").read_text())
    aucs = [report["metrics"]["test"][t]["roc_auc"] for t in tasks]
    assert all(0.0 <= a <= 1.0 for a in aucs)
    state = load_file(str(run / "checkpoints" / "best" / "model.safetensors"))
    assert state["heads.gate.weight"].shape == (3 * 4, 32)
    assert state["trunk.experts.3.0.weight"].shape == (16, 32)
    assert main(["eval", str(run)]) == 0
    again = json.loads((run / "eval.json").read_text())
    assert again["metrics"]["test"]["NR-AhR"]["roc_auc"] == pytest.approx(aucs[0])
    capsys.readouterr()
