"""The baseline a run compares with: the one given, else the one it remembers, else the
config's; absolute; a remembered one that is gone is one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from polytask._core import PolytaskError
from polytask.config.schema import TrainConfig
from polytask.jobs.fit import run_baseline


def test_the_baseline_a_run_uses(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text("{}")
    config = TrainConfig.model_validate({"data": {"source": "tox21"}})
    assert run_baseline(None, None, config) is None
    assert run_baseline(report, "/elsewhere", config) == str(report.resolve())  # given first
    assert run_baseline(None, str(report), config) == str(report.resolve())  # remembered
    with pytest.raises(PolytaskError, match=r"\(remembered by the run\): no such report"):
        run_baseline(None, str(tmp_path / "moved.json"), config)
