"""Small multi-stage configs on the bundled Tox21 (each stage trains in about a second)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import needs

FEATURES = {"kind": "ecfp", "bits": 256}


def tox21(tasks: list[str]) -> dict[str, Any]:
    needs("rdkit")  # ECFP features
    return {"source": "tox21", "tasks": tasks, "featurizer": FEATURES}


def two_stages(
    tmp_path: Path, *, what: str = "trunk", heads: int | None = None, **train: Any
) -> Path:
    """Stage ``pre`` on three Tox21 tasks, then ``fine`` on two of them plus a new one."""
    cfg: dict[str, Any] = {
        "seed": 0,
        "data": tox21(["NR-AhR", "SR-ARE", "SR-MMP"]),
        "model": {
            "trunk": {"kind": "mlp", "hidden": [32], "dropout": 0.1},
            "heads": {"hidden": heads},
        },
        "train": {
            "steps": 12,
            "batch_size": 64,
            "eval_every": 6,
            "checkpoint_every": 2,
            "optimizer": {"lr": 0.003},
            **train,
        },
        "stages": [
            {"name": "pre", "data": tox21(["NR-AhR", "SR-ARE", "SR-MMP"])},
            {
                "name": "fine",
                "load": {"from": "pre", "what": what},
                "data": tox21(["SR-ARE", "SR-MMP", "NR-AR"]),
                "steps": 16,
                "optimizer": {"lr": 0.001},
            },
        ],
    }
    path = tmp_path / "stages.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def edit(path: Path, change: Any) -> Path:
    """Apply ``change(dict)`` to the YAML at ``path`` and write it to a sibling file."""
    cfg = yaml.safe_load(path.read_text())
    change(cfg)
    out = path.with_name(f"edited-{len(list(path.parent.glob('edited-*')))}.yaml")
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out
