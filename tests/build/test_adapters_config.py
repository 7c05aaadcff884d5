"""``model.trunk: {kind: adapters}``: the schema, one-line errors through the CLI, and the example
end to end (exact balancing, crash and resume, eval)."""

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
from polytask.config.schema import AdaptersTrunkConfig, TrainConfig
from polytask.models import AdapterHeads, AdapterTrunk
from polytask.tasks import Task, TaskSet
from tests.conftest import REPO, crash_at_step

EXAMPLE = REPO / "examples" / "adapters_tox21.yaml"
ADAPTERS = {"kind": "adapters", "hidden": [8, 6], "bottleneck": 3, "dropout": 0.0}
DATA = {
    "source": "tox21",
    "tasks": ["NR-AhR", "SR-ARE"],
    "featurizer": {"kind": "ecfp", "bits": 64},
}

MODAL = {k: v for k, v in DATA.items() if k != "featurizer"}


def _config(trunk: dict, heads: dict | None = None) -> TrainConfig:
    model = {"trunk": trunk, **({"heads": heads} if heads else {})}
    return validate(TrainConfig, {"model": model, "train": {"steps": 1}}, "cfg.yaml")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def test_adapters_kind_builds_the_trunk_and_heads():
    cfg = _config({**ADAPTERS, "batch_norm": True}, {"hidden": 4})
    assert isinstance(cfg.model.trunk, AdaptersTrunkConfig)
    ts = TaskSet([Task("a", "binary"), Task("c", "multiclass", num_classes=3)])
    model = make_model(cfg.model, cfg.data, cfg.multimodal, ts, in_dim=12)
    trunk, heads = model.trunk, model.heads
    assert isinstance(trunk, AdapterTrunk) and isinstance(heads, AdapterHeads)
    assert [tuple(la.weight.shape) for la in trunk.layers] == [(8, 12), (6, 8)]
    assert trunk.adapters[0].down_weight.shape == (2, 3, 8)
    assert trunk.adapters[1].up_weight.shape == (2, 6, 3)
    assert trunk.norms[1].norm.num_features == 2 * 6
    assert heads.names == ("a", "c") and heads.hidden_weight.shape == (2, 4, 6)
    defaults = _config({"kind": "adapters"}).model.trunk
    assert isinstance(defaults, AdaptersTrunkConfig)
    assert (defaults.hidden, defaults.bottleneck, defaults.batch_norm) == ([1024, 512], 32, False)


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"bottleneck": 0}, "model.trunk.bottleneck"),
        ({"hidden": []}, "model.trunk.hidden"),
        ({"hidden": [0]}, "model.trunk.hidden.0"),
        ({"dropout": 1.0}, "model.trunk.dropout"),
        ({"experts": 2}, "model.trunk.experts"),  # a moe key on an adapters trunk
    ],
)
def test_bad_adapter_values_name_the_key(patch, key):
    with pytest.raises(PolytaskError, match=rf"cfg.yaml: key '{re.escape(key)}'"):
        _config({**ADAPTERS, **patch})


def _write(tmp_path, **patch) -> str:
    raw = {"data": DATA, "model": {"trunk": ADAPTERS}, "train": {"steps": 2}, **patch}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        (
            {"balancing": {"method": "upgrad", "mode": "features"}},
            r"key 'balancing.mode'.*mode 'features'.*adapters.*use mode: exact",
        ),
        (
            {"data": {**MODAL, "modalities": {"ecfp": {"kind": "ecfp", "bits": 64}}}},
            r"key 'model.trunk.kind': 'adapters' does not take multi-modal inputs",
        ),
        (
            {"data": {"source": "digits", "labels": 50}},
            r"key 'model.trunk.kind': image data needs trunk kind 'conv'",
        ),
    ],
)
def test_refused_combinations_are_one_line_exit_2(tmp_path, capsys, patch, needle):
    cfg = _write(tmp_path, **patch)
    assert main(["train", cfg, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert re.search(needle, _error_line(capsys))
    assert not (tmp_path / "run" / "report.json").exists()


@pytest.mark.needs("rdkit")
def test_example_trains_with_exact_upgrad_resumes_and_evaluates(tmp_path, capsys, monkeypatch):
    data = yaml.safe_load(EXAMPLE.read_text())
    assert data["model"]["trunk"]["kind"] == "adapters"
    tasks = ["NR-AhR", "SR-ARE", "SR-MMP"]
    data["data"].update(tasks=tasks, featurizer={"kind": "ecfp", "bits": 128})
    data["model"]["trunk"].update(hidden=[32, 16], bottleneck=4)
    data["train"].pop("epochs")
    data["train"].update(steps=8, eval_every=4, checkpoint_every=2, batch_size=64)
    data["balancing"] = {"method": "upgrad", "mode": "exact"}
    cfg = tmp_path / "adapters.yaml"
    cfg.write_text(yaml.safe_dump(data))
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(ref), "--no-progress"]) == 0
    crash_at_step(cfg, run, 5, monkeypatch)
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0000004"
    assert main(["train", str(cfg), "--out", str(run), "--resume", "--no-progress"]) == 0
    for name in ("step-0000008", "best"):  # resumed = uninterrupted, bit for bit
        a = load_file(str(ref / "checkpoints" / name / "model.safetensors"))
        b = load_file(str(run / "checkpoints" / name / "model.safetensors"))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    report = json.loads((run / "report.json").read_text())
    assert report["training"]["steps"] == 8
    aucs = [report["metrics"]["test"][t]["roc_auc"] for t in tasks]
    assert all(0.0 <= a <= 1.0 for a in aucs)
    state = load_file(str(run / "checkpoints" / "best" / "model.safetensors"))
    assert state["trunk.adapters.0.down_weight"].shape == (3, 4, 32)
    assert state["trunk.adapters.1.up_weight"].shape == (3, 16, 4)
    assert state["trunk.adapters.1.up_weight"].abs().sum() > 0  # the adapters trained
    assert state["trunk.norms.0.norm.running_mean"].shape == (3 * 32,)
    assert main(["eval", str(run)]) == 0
    again = json.loads((run / "eval.json").read_text())
    assert again["metrics"]["test"]["NR-AhR"]["roc_auc"] == pytest.approx(aucs[0])
    capsys.readouterr()
