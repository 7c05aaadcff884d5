"""Step and validation logs as JSON Lines (one object per line) plus a CSV of validations.

On resume the logs are cut back to the checkpoint's step, so a resumed run's logs equal an
uninterrupted run's (apart from timing fields).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from polytask._core import write_text


def float32_digits(values: Iterable[float]) -> list[float]:
    """``values`` rounded to 9 significant digits: exact for float32 numbers (9 digits identify
    every float32), and about half the characters of a double's 17-digit form in JSON. For the
    K-long lists of a step record (losses, weights)."""
    return [float(f"{v:.9g}") for v in values]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class RunLog:
    """Appends to ``<dir>/train.jsonl`` and ``<dir>/val.jsonl``; writes ``<dir>/val.csv`` on close."""

    def __init__(self, folder: Path, resume_step: int | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.paths = {"train": folder / "train.jsonl", "val": folder / "val.jsonl"}
        for path in self.paths.values():
            if resume_step is None:
                write_text(path, "")
            else:
                self._truncate(path, resume_step)
        # kept open for the run (one line per step); closed in close()
        self._files: dict[str, IO[str]] = {
            k: open(p, "a", encoding="utf-8") for k, p in self.paths.items()
        }

    @staticmethod
    def _truncate(path: Path, step: int) -> None:
        if not path.exists():
            write_text(path, "")
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                break  # a torn last line from a killed run
        write_text(path, "".join(k + "\n" for k in kept))

    def write(self, kind: str, record: Mapping[str, Any]) -> None:
        fh = self._files[kind]
        fh.write(json.dumps(_plain(record)) + "\n")
        fh.flush()

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        rows = [
            json.loads(line)
            for line in self.paths["val"].read_text(encoding="utf-8").splitlines()
            if line
        ]
        flat = [
            {"step": r["step"], "score": r.get("score"), **_flatten(r.get("metrics", {}))}
            for r in rows
        ]
        cols = sorted({k for r in flat for k in r} - {"step", "score"})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["step", "score", *cols])
        writer.writeheader()
        writer.writerows(flat)
        write_text(self.folder / "val.csv", buf.getvalue())


def _flatten(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {f"{task}/{name}": value for task, per in metrics.items() for name, value in per.items()}
