"""A recipe stopped inside a stage or exactly at a stage boundary resumes bit-identically."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from polytask.jobs import stages as stages_run
from polytask.jobs.train import run_train
from tests.conftest import train_subprocess

from .conftest import edit, two_stages


class Killed(BaseException):
    """Stands for a kill: nothing after the raise point runs, no cleanup code catches it."""


def _state(out: Path) -> dict:
    """Every stage's weights (selected, latest checkpoint, best), logs and metrics."""
    state: dict = {}
    for name in ("pre", "fine"):
        folder = out / "stages" / name
        ckpt = folder / "checkpoints"
        last = ckpt / (ckpt / "latest").read_text().strip()
        for tag, path in (
            ("model", folder / "model.safetensors"),
            ("last", last / "model.safetensors"),
            ("best", ckpt / "best" / "model.safetensors"),
        ):
            state.update({f"{name}.{tag}.{k}": v for k, v in load_file(str(path)).items()})
        for log in ("train.jsonl", "val.jsonl"):
            state[f"{name}.{log}"] = (folder / "logs" / log).read_text()
        state[f"{name}.metrics"] = json.loads((folder / "report.json").read_text())["metrics"]
    state["final"] = json.loads((out / "report.json").read_text())["metrics"]
    return state


def _same(ref: dict, run: dict, where: str) -> None:
    assert ref.keys() == run.keys()
    for k, v in ref.items():
        same = v.equal(run[k]) if hasattr(v, "equal") else v == run[k]
        assert same, f"{k} differs after a stop {where}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("ref")
    cfg = two_stages(tmp)
    run_train(cfg, tmp / "ref", progress=False)
    return cfg, _state(tmp / "ref")


@pytest.fixture(scope="module")
def reference_dir(reference) -> Path:
    return reference[0].parent / "ref"


def test_stop_exactly_at_the_stage_boundary(reference, tmp_path, monkeypatch):
    """Stage 1 finished and reported, stage 2 not started: resume starts stage 2 as planned."""
    cfg, ref = reference
    real = stages_run._run_stage

    def stop_before_fine(stage, *a, **kw):
        if stage.name == "fine":
            raise Killed
        return real(stage, *a, **kw)

    monkeypatch.setattr(stages_run, "_run_stage", stop_before_fine)
    with pytest.raises(Killed):
        run_train(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "stages" / "pre" / "report.json").is_file()
    assert not (tmp_path / "run" / "stages" / "fine").exists()
    monkeypatch.setattr(stages_run, "_run_stage", real)
    run_train(cfg, tmp_path / "run", resume=True, progress=False)
    _same(ref, _state(tmp_path / "run"), "at the stage boundary")


def test_stop_after_the_last_step_of_stage_1_before_its_weights_are_saved(
    reference, tmp_path, monkeypatch
):
    """Stage 1's final checkpoint written, its selected weights and report not yet."""
    cfg, ref = reference
    real = stages_run._save_stage_model

    def stop(model, folder):
        raise Killed

    monkeypatch.setattr(stages_run, "_save_stage_model", stop)
    with pytest.raises(Killed):
        run_train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "stages" / "pre" / "report.json").exists()
    monkeypatch.setattr(stages_run, "_save_stage_model", real)
    run_train(cfg, tmp_path / "run", resume=True, progress=False)
    _same(ref, _state(tmp_path / "run"), "between stage 1's last step and its report")


@pytest.mark.slow  # three CLI processes; the in-process stops above cover the boundary
def test_sigkill_inside_stage_2_then_resume(tmp_path):
    cfg = edit(two_stages(tmp_path), lambda c: c["stages"][1].update(steps=80))
    ref = train_subprocess(cfg, tmp_path / "ref")
    assert ref.wait(timeout=120) == 0, ref.stderr.read().decode()  # type: ignore[union-attr]
    kill_at = random.Random().randint(3, 60)
    victim = train_subprocess(cfg, tmp_path / "run")
    log = tmp_path / "run" / "stages" / "fine" / "logs" / "train.jsonl"
    deadline = time.time() + 120
    while victim.poll() is None and time.time() < deadline:
        if log.exists() and len(log.read_text().splitlines()) >= kill_at:
            break
        time.sleep(0.002)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, f"the run ended before the kill at step {kill_at}"
    assert not (tmp_path / "run" / "report.json").exists()
    resumed = train_subprocess(cfg, tmp_path / "run", "--resume")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()  # type: ignore[union-attr]
    _same(_state(tmp_path / "ref"), _state(tmp_path / "run"), f"at step {kill_at} of stage 2")


def test_resume_with_another_recipe_is_refused(reference, tmp_path):
    cfg, _ = reference
    run_train(cfg, tmp_path / "run", progress=False)
    other = edit(cfg, lambda c: c["stages"][1].update(steps=17))
    from polytask.cli.main import main

    assert (
        main(["train", str(other), "--out", str(tmp_path / "run"), "--resume", "--no-progress"])
        == 2
    )
