"""A training run SIGKILLed at a random step and resumed ends bit-identical to an uninterrupted one."""

import json
import random
import signal
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import small_tox21, train_subprocess

STEPS = 100


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _final(out: Path) -> tuple[dict, dict, list]:
    ckpt = out / "checkpoints"
    last = ckpt / (ckpt / "latest").read_text().strip()
    weights = {
        **load_file(str(last / "model.safetensors")),
        **{f"best.{k}": v for k, v in load_file(str(ckpt / "best" / "model.safetensors")).items()},
    }
    report = json.loads((out / "report.json").read_text())
    steps = [json.loads(line) for line in (out / "logs" / "train.jsonl").read_text().splitlines()]
    return weights, report["metrics"], steps


@pytest.mark.parametrize(
    "balancing",
    [
        # The default run keeps famo: its SIGKILL case checks the model, optimizer, RNG, loader
        # and log state that sum's checks, plus the balancer's state. Resuming without a balancer
        # is also checked in process by tests/tasks/ssl/test_ssl_core_config.py::
        # test_resume_with_auxiliary_tasks_is_bit_identical.
        pytest.param(None, marks=pytest.mark.slow),
        pytest.param({"method": "uw"}, marks=pytest.mark.slow),  # same mechanism as famo
        {"method": "famo"},
    ],
    ids=["sum", "uw", "famo"],
)
def test_sigkill_then_resume_is_bit_identical(tmp_path, balancing):
    cfg = small_tox21(tmp_path, steps=STEPS, checkpoint_every=2, eval_every=20)
    if balancing is not None:
        import yaml

        data = yaml.safe_load(cfg.read_text())
        data["balancing"] = balancing
        cfg.write_text(yaml.safe_dump(data))
    ref = train_subprocess(cfg, tmp_path / "ref")  # runs beside the killed and resumed runs

    kill_at = random.Random().randint(20, STEPS - 30)
    victim = train_subprocess(cfg, tmp_path / "run")
    log = tmp_path / ".run.polytask-partial" / "logs" / "train.jsonl"  # built beside run/
    deadline = time.time() + 240
    while _lines(log) < kill_at and victim.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL, f"the run ended before the kill at step {kill_at}"
    assert not (tmp_path / "run").exists() and log.is_file()  # the killed run's partial folder

    resumed = train_subprocess(cfg, tmp_path / "run", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()

    w_ref, m_ref, s_ref = _final(tmp_path / "ref")
    w_run, m_run, s_run = _final(tmp_path / "run")
    assert w_ref.keys() == w_run.keys()
    for k in w_ref:
        assert w_ref[k].equal(w_run[k]), f"tensor {k} differs after resume at step {kill_at}"
    assert m_ref == m_run
    assert s_ref == s_run  # every logged loss of every step, bit for bit
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_resume_with_other_config_is_refused(tmp_path):
    from polytask.cli.main import main

    cfg = small_tox21(tmp_path, steps=10)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    other = small_tox21(tmp_path, steps=10, batch_size=32)
    assert (
        main(["train", str(other), "--out", str(tmp_path / "run"), "--resume", "--no-progress"])
        == 2
    )
