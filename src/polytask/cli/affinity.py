"""``polytask affinity CONFIG --out DIR``: measure which tasks help each other, suggest groups,
print the summary and the folder written."""

from __future__ import annotations

from pathlib import Path

import click

from polytask.cli.help_text import affinity_epilog
from polytask.cli.options import (
    Command,
    config_argument,
    out_option,
    overwrite_option,
    progress_option,
)
from polytask.cli.render import affinity_lines

__all__ = ["affinity_command"]


@click.command(
    "affinity",
    cls=Command,
    epilog_lines=affinity_epilog,
    short_help="Measure which tasks help each other; suggest groups.",
)
@config_argument()
@out_option("Folder for affinity.json and the heatmaps.")
@overwrite_option
@progress_option
def affinity_command(config: Path, out: Path, overwrite: bool, progress: bool) -> None:
    """Train on CONFIG (a train config plus an `affinity:` section) for a measurement budget and
    write task-affinity matrices, heatmaps, suggested groups and source rankings to OUT."""
    from polytask.jobs.affinity import run_affinity

    report = run_affinity(config, out, overwrite=overwrite, progress=progress)
    click.echo("\n".join(affinity_lines(report)), err=True)
    click.echo(out)
