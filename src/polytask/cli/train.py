"""``polytask train CONFIG --out RUN``: train, print the report tables, print the report path.

Ctrl-C stops training in one line (exit code 130): a run stopped after its first checkpoint is
kept at ``--out`` (the output policy of :mod:`polytask.jobs.output`) and the line says which
checkpoint and how to resume; one stopped before it leaves nothing.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

from polytask.cli.help_text import train_epilog
from polytask.cli.options import (
    Command,
    baseline_option,
    config_argument,
    out_option,
    overwrite_option,
    progress_option,
    resume_option,
)
from polytask.cli.render import report_lines

if TYPE_CHECKING:
    from polytask.eval import Report

__all__ = ["flagged_line", "newest_checkpoint", "stopped_line", "train_command"]

INTERRUPTED = 130


def flagged_line(report: Report, shown: int = 8) -> list[str]:
    """One line naming the single-task baselines that do not beat their trivial predictor
    (``training.flagged`` of the report), or none."""
    flagged = list((report.training or {}).get("flagged") or [])
    if not flagged:
        return []
    names = ", ".join(flagged[:shown]) + (
        f", … ({len(flagged)} in all)" if len(flagged) > shown else ""
    )
    return [
        f"not better than a trivial predictor (training mean, prior or majority class): {names}"
        " (report.json: training.trivial)"
    ]


def newest_checkpoint(out: Path) -> tuple[Path, int] | None:
    """The newest checkpoint of the run in ``out`` (of any sub-run) and when it was written."""
    found = []
    for pointer in out.glob("**/checkpoints/latest") if out.is_dir() else ():
        folder = pointer.parent / pointer.read_text(encoding="utf-8").strip()
        if folder.is_dir():
            found.append((folder, pointer.stat().st_mtime_ns))
    return max(found, key=lambda entry: entry[1], default=None)


def stopped_line(config: Path, out: Path, before: tuple[Path, int] | None, resume: bool) -> str:
    """What an interrupted ``train`` kept (compared with ``before``, the checkpoint at start)."""
    now = newest_checkpoint(out)
    if now is None or (now == before and not resume):
        kept = "the folder was left as it was" if out.exists() else "nothing was kept"
        return f"interrupted before the first checkpoint: {kept} at {out}"
    again = shlex.join(["polytask", "train", str(config), "--out", str(out), "--resume"])
    return f"interrupted: kept checkpoint {now[0]} in {out}; continue with: {again}"


@click.command(
    "train",
    cls=Command,
    epilog_lines=train_epilog,
    short_help="Train one model on all tasks of a config.",
)
@config_argument()
@out_option("Run folder: report.json, checkpoints/, logs/.")
@click.option("--single-task", is_flag=True, help="One model per task, same recipe (baselines).")
@resume_option
@overwrite_option
@baseline_option
@progress_option
def train_command(
    config: Path, out: Path, single_task: bool, resume: bool, overwrite: bool,
    baseline: Path | None, progress: bool,
) -> None:  # fmt: skip
    """Train one model on all tasks of CONFIG (YAML) into OUT; print OUT/report.json."""
    from polytask.jobs.run_folder import REPORT_FILE
    from polytask.jobs.train import run_train
    from polytask.train.distributed import world

    before = newest_checkpoint(out)
    try:
        report = run_train(
            config, out, single_task=single_task, resume=resume, overwrite=overwrite,
            progress=progress, baseline=baseline,
        )  # fmt: skip
    except KeyboardInterrupt:
        if world()[0] == 0:
            click.echo(stopped_line(config, out, before, resume), err=True)
        raise click.exceptions.Exit(INTERRUPTED) from None
    if world()[0] == 0:  # under torchrun, rank 0 reports
        click.echo("\n".join(report_lines(report) + flagged_line(report)), err=True)
        click.echo(out / REPORT_FILE)
