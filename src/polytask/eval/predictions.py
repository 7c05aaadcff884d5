"""Per-task predictions and targets of one split, saved with a run so that comparisons between
runs (bootstrap intervals of Δm) can be made later without the models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

from polytask._core import PolytaskError, write_with


@dataclass(frozen=True)
class Predictions:
    """Raw head outputs and targets of every task on one split; ``groups[task]`` numbers the row
    sets (tasks with the same number share their rows)."""

    preds: dict[str, Tensor]
    targets: dict[str, Tensor]
    groups: dict[str, int]

    def save(self, path: Path) -> None:
        """Write to ``path`` (safetensors; the groups in its metadata), atomically."""
        tensors = {f"{t}.pred": p.contiguous() for t, p in self.preds.items()}
        tensors.update({f"{t}.target": y.contiguous() for t, y in self.targets.items()})
        meta = {"groups": json.dumps(self.groups)}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: Path) -> Predictions:
        """The predictions saved at ``path``; a missing or damaged file is one line."""
        from safetensors import safe_open

        if not path.is_file():
            raise PolytaskError(f"no saved predictions at {path}")
        with safe_open(str(path), "pt") as f:
            groups = json.loads((f.metadata() or {}).get("groups", "{}"))
        state = load_file(str(path))
        preds = {t: state[f"{t}.pred"] for t in groups}
        targets = {t: state[f"{t}.target"] for t in groups}
        return cls(preds, targets, {t: int(g) for t, g in groups.items()})
