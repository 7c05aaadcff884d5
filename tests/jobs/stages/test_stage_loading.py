"""What a stage takes from an earlier one: the trunk only (heads fresh) or the trunk and heads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from polytask._core import PolytaskError, seed_everything
from polytask.build.data import prepare_data
from polytask.build.model import make_model
from polytask.config.load import load_config
from polytask.config.schema import TrainConfig
from polytask.config.stages import parse_stages
from polytask.jobs import stages as stages_run
from polytask.jobs.eval import run_eval
from polytask.jobs.train import run_train

from .conftest import edit, two_stages


def _run_capturing_init(cfg: Path, out: Path, monkeypatch) -> dict:
    """Run the recipe; return the state of the fine-tuning model right after loading."""
    seen: dict = {}
    real = stages_run.load_stage_weights

    def spy(model, folder, what, where):
        names = real(model, folder, what, where)
        seen["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        seen["heads"] = names
        return names

    monkeypatch.setattr(stages_run, "load_stage_weights", spy)
    run_train(cfg, out, progress=False)
    return seen


def _fresh(cfg: Path) -> dict:
    fine = parse_stages(load_config(TrainConfig, cfg), str(cfg))[1]
    prepared = prepare_data(fine.config, cfg.parent)
    seed_everything(fine.config.seed, True)
    c = fine.config
    return make_model(c.model, c.data, c.multimodal, prepared.taskset, prepared.in_dim).state_dict()


def test_trunk_only_leaves_every_head_fresh(tmp_path, monkeypatch):
    cfg = two_stages(tmp_path, what="trunk", heads=8)
    seen = _run_capturing_init(cfg, tmp_path / "run", monkeypatch)
    fresh = _fresh(cfg)
    pre = load_file(str(tmp_path / "run" / "stages" / "pre" / "model.safetensors"))
    assert seen["heads"] == []
    assert seen["state"].keys() == fresh.keys()
    for k, v in seen["state"].items():
        if k.startswith("heads."):
            assert v.equal(fresh[k]), f"{k} is not the fresh initialisation"
        else:
            assert v.equal(pre[k]), f"{k} is not the pre-trained trunk"
            assert not v.equal(fresh[k]) or "num_batches" in k


def _moe(cfg: dict) -> None:
    cfg["model"]["trunk"] = {"kind": "moe", "bottom": [16], "experts": 2, "expert_hidden": [8]}


@pytest.mark.parametrize("trunk", ["mlp", "moe"])
def test_trunk_and_heads_carries_the_shared_tasks_heads_only(tmp_path, monkeypatch, trunk):
    # linear heads: rows of one stacked layer; moe: rows of the stacked gates and towers
    cfg = two_stages(tmp_path, what="trunk+heads")
    cfg = edit(cfg, _moe) if trunk == "moe" else cfg
    seen = _run_capturing_init(cfg, tmp_path / "run", monkeypatch)
    fresh = stages_run.head_state(_model_with(cfg, _fresh(cfg)))
    loaded = stages_run.head_state(_model_with(cfg, seen["state"]))
    pre = load_file(str(tmp_path / "run" / "stages" / "pre" / "heads.safetensors"))
    assert seen["heads"] == ["SR-ARE", "SR-MMP"]
    for key, value in loaded.items():
        task = key.split(".", 1)[0]
        expected = pre[key] if task in ("SR-ARE", "SR-MMP") else fresh[key]
        assert value.equal(expected), key
    assert any(k.startswith("NR-AR.") for k in loaded)
    assert (trunk == "moe") == any(".gate." in k for k in loaded)


def _model_with(cfg: Path, state: dict):
    fine = parse_stages(load_config(TrainConfig, cfg), str(cfg))[1]
    prepared = prepare_data(fine.config, cfg.parent)
    c = fine.config
    model = make_model(c.model, c.data, c.multimodal, prepared.taskset, prepared.in_dim)
    model.load_state_dict(state)
    return model


def test_head_state_round_trips_per_task(tmp_path):
    cfg = two_stages(tmp_path, heads=8)
    a = _model_with(cfg, _fresh(cfg))
    b = _model_with(cfg, {k: v * 0 for k, v in _fresh(cfg).items()})
    stages_run._set_heads(
        b, {k: v for k, v in stages_run.head_state(a).items() if k.startswith("NR-AR.")}
    )
    after = stages_run.head_state(b)
    assert all(
        after[k].equal(v) for k, v in stages_run.head_state(a).items() if k.startswith("NR-AR.")
    )
    assert all(not v.any() for k, v in after.items() if not k.startswith("NR-AR."))


def test_each_stage_writes_its_run_folder_and_the_final_report(tmp_path):
    cfg = two_stages(tmp_path)
    report = run_train(cfg, tmp_path / "run", progress=False)
    root = tmp_path / "run"
    for name in ("pre", "fine"):
        for f in ("run.json", "report.json", "model.safetensors", "heads.safetensors"):
            assert (root / "stages" / name / f).is_file(), f"{name}/{f}"
        assert (root / "stages" / name / "logs" / "train.jsonl").is_file()
    steps = [
        len((root / "stages" / n / "logs" / "train.jsonl").read_text().splitlines())
        for n in ("pre", "fine")
    ]
    assert steps == [12, 16]
    assert [s["name"] for s in report.stages or []] == ["pre", "fine"]
    assert report.stage == "fine" and report.loaded == {
        "from": "pre",
        "what": "trunk",
        "heads": [],
    }
    assert report.task_names(auxiliary=True) == ["SR-ARE", "SR-MMP", "NR-AR"]
    assert (root / "report.json").is_file()
    with pytest.raises(
        PolytaskError, match=r"a multi-stage run; evaluate one stage: .*\(pre, fine\)"
    ):
        run_eval(root)
    # a stage folder is an ordinary run folder: polytask eval re-evaluates its selected weights
    again, written = run_eval(root / "stages" / "fine")
    assert written == root / "stages" / "fine" / "eval.json" and written.is_file()
    assert (
        again.metrics["test"]
        == json.loads((root / "stages" / "fine" / "report.json").read_text())["metrics"]["test"]
    )
