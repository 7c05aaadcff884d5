"""``polytask eval RUN``: score a run's selected weights (or a merged trunk), print where the
report was written."""

from __future__ import annotations

from pathlib import Path

import click

from polytask.cli.options import Command, baseline_option, out_option
from polytask.cli.render import report_lines

__all__ = ["eval_command"]


@click.command("eval", cls=Command, short_help="Score a run's selected weights, or a merged trunk.")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@baseline_option
@out_option(
    "Report file to write (default RUN/eval.json, or RUN/eval-merged.json with --trunk).",
    required=False,
)
@click.option(
    "--trunk",
    type=click.Path(path_type=Path),
    default=None,
    help="Score this shared trunk (e.g. a merge of a single-task run's trunks) with each task's "
    "own head.",
)
@click.option(
    "--norm-stats",
    is_flag=True,
    help="With --trunk: first re-estimate the trunk's batch-norm statistics on training inputs.",
)
def eval_command(
    run_dir: Path, baseline: Path | None, out: Path | None, trunk: Path | None, norm_stats: bool
) -> None:
    """Evaluate the selected checkpoint of RUN (or a checkpoint folder in it) on val and test."""
    from polytask.jobs.eval import run_eval

    report, written = run_eval(
        run_dir, baseline=baseline, out_file=out, trunk=trunk, norm_stats=norm_stats
    )
    click.echo("\n".join(report_lines(report)), err=True)
    click.echo(written)
