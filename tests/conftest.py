"""Shared test fixtures: a per-session feature cache and small real-data configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _feature_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("POLYTASK_CACHE", str(tmp_path_factory.mktemp("cache")))


def small_tox21(tmp_path: Path, **train: object) -> Path:
    """A 3-task Tox21 config that trains in about a second."""
    cfg = {
        "seed": 0,
        "data": {
            "source": "tox21",
            "tasks": ["NR-AhR", "SR-ARE", "SR-MMP"],
            "featurizer": {"kind": "ecfp", "bits": 512},
        },
        "model": {"trunk": {"hidden": [64], "dropout": 0.1}},
        "train": {
            "steps": 30,
            "batch_size": 64,
            "eval_every": 10,
            "optimizer": {"lr": 0.003},
            **train,
        },
    }
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_subprocess(cfg: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``polytask train CFG --out OUT`` in a child process (for tests that kill and resume it)."""
    cmd = [sys.executable, "-m", "polytask.cli.main", "train", str(cfg), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, "--no-progress", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


class _Crash(Exception):
    """Raised inside a training step to stand in for a killed process."""


def crash_at_step(cfg: Path, out: Path, step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``polytask train CFG --out OUT`` that dies just before training step ``step``."""
    from polytask.cli.main import main
    from polytask.train.trainer import Trainer

    original = Trainer._one_step

    def crash(self: Trainer, log: Any) -> None:
        if self.step == step:
            raise _Crash
        original(self, log)

    monkeypatch.setattr(Trainer, "_one_step", crash)
    with pytest.raises(_Crash):
        main(["train", str(cfg), "--out", str(out), "--no-progress"])
    monkeypatch.setattr(Trainer, "_one_step", original)
