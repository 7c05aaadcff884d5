"""Everything an affinity run found, in one object, written to a folder as JSON and PNGs.

``build_affinity_report`` turns measured matrices into groupings (for each requested number of
groups) and source rankings (for each target); ``save_affinity_report`` writes

- ``affinity.json``: task names, every matrix, groupings with their top candidates, source
  rankings, Lasso selections, data-map clustering, metadata (NaN written as ``null``);
- ``heatmap_<matrix>.png``: one heatmap per matrix (rows: source ``i``, columns: target ``j``).

Each file is written atomically; existing files are only replaced with ``overwrite=True``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polytask._core import PolytaskError, write_text
from polytask.affinity._validate import check_matrix, check_task_names
from polytask.affinity.datamaps import DataMapClustering
from polytask.affinity.grouping import GroupingResult, choose_groups
from polytask.affinity.heatmap import save_heatmap
from polytask.affinity.sources import LassoSelection, SourceRanking, rank_sources

REPORT_FILE = "affinity.json"


@dataclass(frozen=True)
class AffinityMatrix:
    """One named affinity matrix: ``values[i, j]`` = affinity of task ``i`` onto task ``j``."""

    name: str
    task_names: tuple[str, ...]
    values: Tensor
    description: str = ""

    def __post_init__(self) -> None:
        names = check_task_names(self.task_names, f"matrix '{self.name}'")
        values = check_matrix(
            self.values, f"matrix '{self.name}'", n_tasks=len(names), allow_nan=True
        )
        object.__setattr__(self, "task_names", names)
        object.__setattr__(self, "values", values)

    def to_dict(self) -> dict[str, object]:
        return {
            "task_names": list(self.task_names),
            "values": _nan_to_none(self.values.tolist()),
            "description": self.description,
        }


@dataclass
class AffinityReport:
    """Matrices, groupings, source rankings and data-map clustering of one set of tasks."""

    matrices: dict[str, AffinityMatrix] = field(default_factory=dict)
    groupings: dict[str, GroupingResult] = field(default_factory=dict)
    source_rankings: list[SourceRanking] = field(default_factory=list)
    lasso: list[LassoSelection] = field(default_factory=list)
    data_maps: DataMapClustering | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (the format of ``affinity.json``)."""
        return {
            "format": "polytask.affinity/1",
            "matrices": {k: m.to_dict() for k, m in self.matrices.items()},
            "groupings": {k: g.to_dict() for k, g in self.groupings.items()},
            "source_rankings": [r.to_dict() for r in self.source_rankings],
            "lasso": [s.to_dict() for s in self.lasso],
            "data_maps": None if self.data_maps is None else self.data_maps.to_dict(),
            "metadata": self.metadata,
        }


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    return x


def build_affinity_report(
    matrices: Sequence[AffinityMatrix],
    n_groups: Sequence[int] = (2,),
    targets: Sequence[str] | None = None,
    *,
    top: int = 10,
    exact_max_tasks: int = 12,
    metadata: Mapping[str, Any] | None = None,
) -> AffinityReport:
    """Group the tasks of every matrix into each ``n_groups`` and rank sources for ``targets``.

    Grouping keys are ``"<matrix>/G=<n>"``; every task of a matrix is ranked as a target when
    ``targets`` is ``None``. Matrices with NaN entries are reported but not grouped or ranked.
    """
    report = AffinityReport(metadata=dict(metadata or {}))
    for mat in matrices:
        if mat.name in report.matrices:
            raise PolytaskError(f"build_affinity_report: two matrices named '{mat.name}'")
        report.matrices[mat.name] = mat
        if not torch.isfinite(mat.values).all():
            report.metadata.setdefault("skipped_nan_matrices", []).append(mat.name)
            continue
        m = len(mat.task_names)
        for g in n_groups:
            if g > m:
                raise PolytaskError(
                    f"build_affinity_report: cannot split {m} tasks of '{mat.name}' into {g} groups"
                )
            report.groupings[f"{mat.name}/G={g}"] = choose_groups(
                mat.values, g, mat.task_names, top=top, exact_max_tasks=exact_max_tasks
            )
        for t in mat.task_names if targets is None else targets:
            if t in mat.task_names:
                report.source_rankings.append(
                    rank_sources(mat.values, mat.task_names, t, method=mat.name)
                )
    return report


def save_affinity_report(
    out_dir: str | os.PathLike[str],
    report: AffinityReport,
    *,
    heatmaps: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``affinity.json`` and one heatmap PNG per matrix into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PolytaskError(f"save_affinity_report: {out} exists and is not a folder")
    targets = [out / REPORT_FILE]
    if heatmaps:
        targets += [out / f"heatmap_{_safe(name)}.png" for name in report.matrices]
    if not overwrite:
        existing = [p for p in targets if p.exists()]
        if existing:
            raise PolytaskError(
                f"save_affinity_report: {existing[0]} exists (pass overwrite=True to replace it)"
            )
    text = json.dumps(_nan_to_none(report.to_dict()), indent=2, allow_nan=False)
    out.mkdir(parents=True, exist_ok=True)
    if heatmaps:
        for (name, mat), path in zip(report.matrices.items(), targets[1:]):
            save_heatmap(
                path, np.asarray(mat.values.tolist()), mat.task_names, title=mat.description or name
            )
    write_text(targets[0], text + "\n")
    return targets


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def load_affinity_report_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ``affinity.json`` (or the folder holding one) back as a dict."""
    p = Path(path)
    p = p / REPORT_FILE if p.is_dir() else p
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolytaskError(f"cannot read affinity report {p}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != "polytask.affinity/1":
        raise PolytaskError(f"{p} is not a polytask affinity report (format polytask.affinity/1)")
    return data
