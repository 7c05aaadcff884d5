"""Stage declarations: derived configs, and one-line errors (exit 2) for bad stages."""

from __future__ import annotations

import math

import pytest

from polytask._core import PolytaskError
from polytask.cli.main import main
from polytask.config.load import load_config
from polytask.config.schema import TrainConfig
from polytask.config.stages import parse_stages

from .conftest import edit, two_stages


def _stages(path):
    return parse_stages(load_config(TrainConfig, path), str(path))


def test_stage_configs_are_derived_from_the_top_level(tmp_path):
    pre, fine = _stages(two_stages(tmp_path))
    assert (pre.name, fine.name) == ("pre", "fine")
    assert pre.config.train.steps == 12 and fine.config.train.steps == 16
    assert pre.config.train.optimizer.lr == 0.003 and fine.config.train.optimizer.lr == 0.001
    # the rest of the optimizer section is inherited, not reset
    assert fine.config.train.optimizer.weight_decay == pre.config.train.optimizer.weight_decay
    assert fine.config.train.batch_size == 64 and fine.config.train.eval_every == 6
    assert fine.config.data.tasks == ["SR-ARE", "SR-MMP", "NR-AR"]
    assert fine.spec.load is not None and fine.spec.load.from_ == "pre"
    assert fine.config.stages is None


def test_epochs_replace_steps_and_train_keys_merge(tmp_path):
    def change(c):
        c["stages"][1].pop("steps")
        c["stages"][1]["epochs"] = 2
        c["stages"][1]["train"] = {"batch_size": 32, "scheduler": {"name": "cosine"}}

    fine = _stages(edit(two_stages(tmp_path), change))[1]
    assert (fine.config.train.steps, fine.config.train.epochs) == (None, 2)
    assert fine.config.train.batch_size == 32 and fine.config.train.scheduler.name == "cosine"
    assert fine.config.train.scheduler.warmup_steps == 0


def test_log_classes_scales_the_task_weights(tmp_path):
    def change(c):
        c["stages"][0]["loss_scale"] = "log_classes"
        c["stages"][1]["loss_scale"] = "log_classes"
        c["stages"][1]["tasks"] = [
            {"name": "SR-ARE", "weight": 2.0},
            {"name": "SR-MMP", "kind": "regression"},
            {"name": "NR-AR", "kind": "multiclass", "num_classes": 10},
        ]

    pre, fine = _stages(edit(two_stages(tmp_path), change))
    assert [t.weight for t in pre.config.tasks or []] == [1 / math.log(2)] * 3
    weights = [t.weight for t in fine.config.tasks or []]
    assert weights == [2.0 / math.log(2), 1.0, 1 / math.log(10)]
    assert weights[0] == pytest.approx(2.8853900817779268, abs=0, rel=1e-15)


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("prx", "stage 'prx' does not exist (stages: pre, fine)"),
        ("fine", "stage 'fine' is this stage itself"),
    ],
)
def test_loading_from_a_missing_stage_is_one_line_exit_2(tmp_path, capsys, source, why):
    def change(c):
        c["stages"][1]["load"]["from"] = source

    cfg = edit(two_stages(tmp_path), change)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"stages[1] 'fine': key 'load.from': {why}" in err
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_loading_from_a_later_stage_is_refused(tmp_path):
    def change(c):
        c["stages"][0]["load"] = {"from": "fine"}

    with pytest.raises(
        PolytaskError, match=r"stages\[0\] 'pre': key 'load.from': stage 'fine' comes later"
    ):
        _stages(edit(two_stages(tmp_path), change))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["stages"][1].update(name="pre"),
            r"stages\[1\] 'pre': key 'name': stage name 'pre' is used twice",
        ),
        (
            lambda c: c["stages"][1]["load"].update(what="heads"),
            r"key 'stages.1.load.what'",
        ),
        (lambda c: c["stages"][1].update(stepz=3), r"key 'stages.1.stepz': unknown key"),
        (
            lambda c: c["stages"][1].update(sampler={"kind": "all"}),
            r"stages\[1\] 'fine': key 'sampler': a sampler needs 'per_task' data",
        ),
        (
            lambda c: c["stages"][1].update(optimizer={"lr": -1}),
            r"stages\[1\] 'fine': key 'train.optimizer.lr'",
        ),
        (
            lambda c: c["stages"][1].update(balancing={"methd": "uw"}),
            r"key 'stages.1.balancing.methd': unknown key",
        ),
        (lambda c: c.update(stages=[]), r"key 'stages': give at least one stage"),
    ],
)
def test_bad_stage_keys_name_the_stage_and_the_key(tmp_path, change, message):
    with pytest.raises(PolytaskError, match=message):
        _stages(edit(two_stages(tmp_path), change))


def test_single_task_baselines_of_a_recipe_are_its_last_stage_per_task(tmp_path):
    from polytask.jobs.train import run_train

    report = run_train(two_stages(tmp_path), tmp_path / "r", single_task=True, progress=False)
    assert report.mode == "single-task" and report.stage == "fine"
    assert report.runs is not None and sorted(report.runs) == sorted(report.task_names())
    assert (tmp_path / "r" / "single" / report.task_names()[0] / "trunk.safetensors").is_file()
