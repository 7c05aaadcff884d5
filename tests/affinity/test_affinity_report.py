"""The report: build from matrices, write JSON and PNGs atomically, read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from polytask._core import PolytaskError
from polytask.affinity import (
    AffinityMatrix,
    GroupingResult,
    build_affinity_report,
    cluster_tasks_by_data_maps,
    lasso_source_selection,
    load_affinity_report_dict,
    save_affinity_report,
)

NAMES = ("a", "b", "c", "d")
BLOCKS = torch.tensor(
    [[1.0, 0.9, -0.1, 0.0], [0.8, 1.0, 0.0, -0.2], [-0.1, 0.1, 1.0, 0.7], [0.0, -0.1, 0.6, 1.0]],
    dtype=torch.float64,
)


def _report() -> object:
    nan_matrix = BLOCKS.clone()
    nan_matrix[0, 3] = float("nan")
    report = build_affinity_report(
        [
            AffinityMatrix("lookahead", NAMES, BLOCKS, "TAG lookahead Z(i->j)"),
            AffinityMatrix("partial", NAMES, nan_matrix),
        ],
        n_groups=[2, 3],
        targets=["a"],
        metadata={"steps": 20},
    )
    rng = np.random.default_rng(0)
    src = {n: rng.normal(size=50) for n in "bcd"}
    report.lasso.append(lasso_source_selection("a", 2 * src["b"], src, alpha=0.01))
    dyn = {n: rng.uniform(size=(3, 20)) for n in NAMES}
    report.data_maps = cluster_tasks_by_data_maps(dyn, 2)
    return report


@pytest.mark.needs("sklearn")  # the report holds a Lasso selection and data-map clusters
def test_build_groups_and_rankings() -> None:
    report = _report()
    assert set(report.groupings) == {"lookahead/G=2", "lookahead/G=3"}
    assert report.groupings["lookahead/G=2"].named() == [["a", "b"], ["c", "d"]]
    assert report.metadata["skipped_nan_matrices"] == ["partial"]
    (ranking,) = report.source_rankings
    assert ranking.target == "a" and ranking.sources == ("b", "d", "c")  # column a: 0.8, 0.0, -0.1


@pytest.mark.needs("sklearn", "matplotlib")
def test_save_writes_json_and_pngs(tmp_path: Path) -> None:
    report = _report()
    out = tmp_path / "affinity"
    paths = save_affinity_report(out, report)
    assert sorted(p.name for p in paths) == [
        "affinity.json",
        "heatmap_lookahead.png",
        "heatmap_partial.png",
    ]
    for p in paths[1:]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "affinity.json").read_text())
    assert data["matrices"]["lookahead"]["values"] == BLOCKS.tolist()
    assert data["matrices"]["partial"]["values"][0][3] is None  # NaN written as null
    assert data["groupings"]["lookahead/G=2"]["best"] == [["a", "b"], ["c", "d"]]
    assert data["source_rankings"][0]["ranking"][0] == {"source": "b", "score": 0.8}
    assert data["lasso"][0]["selected"] == ["b"]
    assert data["metadata"]["steps"] == 20
    assert (
        GroupingResult.from_dict(data["groupings"]["lookahead/G=3"])
        == report.groupings["lookahead/G=3"]
    )
    assert load_affinity_report_dict(out) == data
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.needs("sklearn")
def test_refuses_to_overwrite(tmp_path: Path) -> None:
    report = _report()
    save_affinity_report(tmp_path, report, heatmaps=False)
    before = (tmp_path / "affinity.json").read_bytes()
    with pytest.raises(PolytaskError, match="exists"):
        save_affinity_report(tmp_path, report, heatmaps=False)
    assert (tmp_path / "affinity.json").read_bytes() == before
    save_affinity_report(tmp_path, report, heatmaps=False, overwrite=True)


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(PolytaskError, match="into 5 groups"):
        build_affinity_report([AffinityMatrix("m", NAMES, BLOCKS)], n_groups=[5])
    with pytest.raises(PolytaskError, match="4x4 but there are 3 tasks"):
        AffinityMatrix("m", ("a", "b", "c"), BLOCKS)
    with pytest.raises(PolytaskError, match="two matrices named"):
        build_affinity_report([AffinityMatrix("m", NAMES, BLOCKS)] * 2)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(PolytaskError, match="not a polytask affinity report"):
        load_affinity_report_dict(tmp_path / "x.json")
