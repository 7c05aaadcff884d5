"""A rich progress bar over training steps (silent when disabled or not on a terminal)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, step: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step)  # type: ignore[arg-type]

    def note(self, best: float | None) -> None:
        if self._progress is not None and self._task is not None and best is not None:
            self._progress.update(self._task, best=f"best {best:.4f}")  # type: ignore[arg-type]


@contextlib.contextmanager
def progress_bar(
    total: int, start: int, enabled: bool = True, label: str = "train"
) -> Iterator[_Bar]:
    if not enabled:
        yield _Bar(None, None)
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(label, total=total, completed=start, best="")
        yield _Bar(progress, task)
