"""The options every command shares, spelled and explained once.

* ``--out``: where the command writes; ``--overwrite`` replaces an output polytask wrote (only once
  the new one is complete); ``--resume`` continues a stopped training run.
* ``--progress/--no-progress``: on every command that trains or merges.
* ``-h/--help`` everywhere. Help text that comes from the config schemas is built only when help
  is shown (:class:`Command`), so no command imports torch to describe itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "CONTEXT",
    "Command",
    "baseline_option",
    "config_argument",
    "out_option",
    "overwrite_option",
    "progress_option",
    "resume_option",
]

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Command(click.Command):
    """A command whose epilog lines (``epilog_lines()``) are computed only when help is shown."""

    def __init__(
        self, *args: Any, epilog_lines: Callable[[], list[str]] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("context_settings", CONTEXT)
        super().__init__(*args, **kwargs)
        self.epilog_lines = epilog_lines

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        if self.epilog_lines is not None:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text("\b\n" + "\n".join(self.epilog_lines()))


def out_option(help: str, *, required: bool = True) -> Callable[[F], F]:
    """``--out PATH``: what the command writes (the output policy of :mod:`polytask.jobs.output`
    checks it, with one message whatever is there)."""
    kind = click.Path(path_type=Path)
    return click.option("--out", "out", required=required, type=kind, help=help)


def config_argument(what: str = "CONFIG") -> Callable[[F], F]:
    """The YAML config a command runs."""
    return click.argument(
        what.lower(), metavar=what, type=click.Path(dir_okay=False, path_type=Path)
    )


overwrite_option = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace an existing --out that polytask wrote (swapped in only once the new one is "
    "complete).",
)
resume_option = click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its latest checkpoint, exactly as if never stopped.",
)
progress_option = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)
baseline_option = click.option(
    "--baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A single-task report.json to compare against (Δm, Δp, per-task gains); default: the "
    "config's evaluation.baseline.",
)
