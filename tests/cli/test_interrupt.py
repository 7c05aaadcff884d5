"""Ctrl-C during ``polytask train``: one line, exit code 130, and what was kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polytask.cli.main import main
from polytask.cli.train import newest_checkpoint, stopped_line
from polytask.jobs.output import partial_path
from tests.conftest import small_tox21

INTERRUPTED = 130


def _interrupt(cfg: Path, out: Path, ready: Path) -> tuple[int, list[str], str]:
    """Start ``polytask train``, send SIGINT once ``ready`` exists; exit code, stderr, stdout."""
    cmd = [sys.executable, "-m", "polytask.cli.main", "train", str(cfg), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + 240
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr.decode().strip().splitlines(), stdout.decode()


def test_interrupt_after_a_checkpoint_keeps_it_and_says_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = small_tox21(tmp_path, steps=60, eval_every=10)
    out = tmp_path / "run"
    ready = partial_path(out) / "checkpoints" / "latest"
    code, err, stdout = _interrupt(cfg, out, ready)
    assert code == INTERRUPTED and stdout == ""
    assert len(err) == 1, err
    kept = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    assert err[0] == (
        f"interrupted: kept checkpoint {kept} in {out}; continue with: "
        f"polytask train {cfg} --out {out} --resume"
    )
    step = int(kept.name.removeprefix("step-"))
    assert 10 <= step < 60 and step % 10 == 0 and (kept / "model.safetensors").is_file()
    assert not partial_path(out).exists() and not (out / "report.json").exists()
    # the command it suggests finishes the run
    assert main(["train", str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert capsys.readouterr().out == f"{out / 'report.json'}\n"
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["steps"] == 60


def test_interrupt_before_the_first_checkpoint_keeps_nothing(tmp_path: Path) -> None:
    cfg = small_tox21(tmp_path, steps=100_000, eval_every=100_000)
    out = tmp_path / "run"
    ready = partial_path(out) / ".polytask"  # the run has claimed its folder
    code, err, stdout = _interrupt(cfg, out, ready)
    assert code == INTERRUPTED and stdout == ""
    assert err == [f"interrupted before the first checkpoint: nothing was kept at {out}"]
    assert not out.exists() and not partial_path(out).exists()


def _checkpoint(root: Path, step: int) -> Path:
    folder = root / "checkpoints" / f"step-{step:07d}"
    folder.mkdir(parents=True)
    (root / "checkpoints" / "latest").write_text(folder.name + "\n")
    return folder


def test_stopped_line_names_the_newest_checkpoint_of_any_sub_run(tmp_path: Path) -> None:
    out, cfg = tmp_path / "my run", Path("a b.yaml")
    assert newest_checkpoint(out) is None
    _checkpoint(out / "single" / "t1", 30)
    newer = _checkpoint(out / "single" / "t2", 10)
    os.utime(newer.parent / "latest", ns=(2 * 10**18, 2 * 10**18))
    assert newest_checkpoint(out) == (newer, 2 * 10**18)
    assert stopped_line(cfg, out, None, resume=False) == (
        f"interrupted: kept checkpoint {newer} in {out}; continue with: "
        f"polytask train 'a b.yaml' --out '{out}' --resume"
    )
    # --overwrite stopped before its first checkpoint: the old run is still there, untouched
    before = newest_checkpoint(out)
    assert stopped_line(cfg, out, before, resume=False) == (
        f"interrupted before the first checkpoint: the folder was left as it was at {out}"
    )
    # --resume stopped before a new checkpoint: the old one is still the one to resume from
    assert stopped_line(cfg, out, before, resume=True).startswith(
        f"interrupted: kept checkpoint {newer}"
    )
