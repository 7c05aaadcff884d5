"""report.json is one typed, versioned schema: written with its version, read back equal,
refused in one line when the version is unknown or the content is not a report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from polytask._core import PolytaskError
from polytask.eval import SCHEMA_VERSION, Report, build_report, load_report, write_report
from polytask.tasks import Task, TaskSet

TS = TaskSet([Task("a", "binary"), Task("b", "regression")])
SCORES = {"a": {"roc_auc": 0.75, "pr_auc": 0.5}, "b": {"mae": math.nan, "rmse": 2.0}}


def _report() -> Report:
    return build_report(
        TS, {"test": SCORES}, mode="multi-task", baseline={"test": SCORES}, seconds=1.5
    )


def test_written_with_its_version_and_read_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_report(path, _report())
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION == 2
    assert raw["metrics"]["test"]["b"]["mae"] is None  # NaN is written as null
    back = load_report(path)
    assert math.isnan(back.metrics["test"]["b"]["mae"])
    assert back.means["test"]["roc_auc"] == 0.75 and back.seconds == 1.5
    assert back.comparison is not None and back.comparison["test"].delta_m == 0.0


def test_a_report_without_a_version_is_version_one(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    raw = _report().model_dump(exclude_none=True, mode="json")
    raw.pop("schema_version")
    path.write_text(json.dumps(raw))
    assert load_report(path).schema_version == 1


def test_a_version_one_report_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "v1.json"
    raw = _report().model_dump(exclude_none=True, mode="json")
    for comp in raw["comparison"].values():  # what version 1 wrote: no floor, no intervals
        for key in ("delta_m_all", "delta_p_all", "excluded", "floor"):
            comp.pop(key, None)
    path.write_text(json.dumps({**raw, "schema_version": 1}))
    back = load_report(path)
    assert back.schema_version == 1 and back.comparison is not None
    assert back.comparison["test"].delta_m == 0.0 and back.comparison["test"].excluded == {}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"schema_version": 3}, r"report schema_version 3; this polytask .* reads versions 1, 2"),
        ({"mode": 3}, r"not a polytask report: key 'mode'"),
        ({"surprise": 1}, r"not a polytask report: key 'surprise': Extra inputs"),
    ],
)
def test_unknown_versions_and_content_are_one_line(
    tmp_path: Path, edit: dict, message: str
) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**_report().model_dump(mode="json"), **edit}))
    with pytest.raises(PolytaskError, match=message):
        load_report(path)


def test_build_report_refuses_unknown_fields() -> None:
    with pytest.raises(ValueError, match="surprise"):
        build_report(TS, {"test": SCORES}, mode="multi-task", surprise=1)
