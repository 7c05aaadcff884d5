"""``polytask train`` and ``polytask eval``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from polytask.eval import Report


def _summary(report: Report) -> None:
    console = Console(stderr=True)
    table = Table(title=f"polytask — {report.mode}")
    table.add_column("task")
    splits = [s for s in ("val", "test") if s in report.metrics]
    metrics = sorted({m for t in report.tasks for m in t.metrics})
    for s in splits:
        for m in metrics:
            table.add_column(f"{s} {m}", justify="right")
    for t in report.tasks:
        row = [t.name]
        for s in splits:
            for m in metrics:
                v = report.metrics[s].get(t.name, {}).get(m)
                row.append("" if v is None or math.isnan(v) else f"{v:.4f}")
        table.add_row(*row)
    row = ["[bold]mean"]
    for s in splits:
        for m in metrics:
            v = report.means[s].get(m)
            row.append("" if v is None else f"[bold]{v:.4f}")
    table.add_row(*row)
    console.print(table)
    for split, comp in (report.comparison or {}).items():
        console.print(
            f"{split}: Δm = {comp.delta_m:+.2f}% (lower is better), Δp = {comp.delta_p:+.2f}% (higher is better)"
        )


@click.command("train")
@click.argument("config", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Run folder: report.json, checkpoints/, logs/.",
)
@click.option(
    "--single-task",
    is_flag=True,
    help="Train one model per task with the same recipe (the baselines).",
)
@click.option(
    "--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint, exactly."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing, non-empty --out folder.")
@click.option(
    "--baseline",
    type=click.Path(path_type=str),
    default=None,
    help="A single-task report.json to compare against (Δm, Δp, gains).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train_command(
    config: str,
    out: str,
    single_task: bool,
    resume: bool,
    overwrite: bool,
    baseline: str | None,
    no_progress: bool,
) -> None:
    """Train one model on all tasks of CONFIG (YAML) and write OUT/report.json."""
    from polytask.jobs.train import run_train
    from polytask.train.distributed import world

    report = run_train(
        config,
        out,
        single_task=single_task,
        resume=resume,
        overwrite=overwrite,
        progress=not no_progress,
        baseline=baseline,
    )
    if world()[0] != 0:  # under torchrun, rank 0 reports
        return
    _summary(report)
    click.echo(f"{out}/report.json")


@click.command("eval")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option(
    "--baseline",
    type=click.Path(path_type=str),
    default=None,
    help="A single-task report.json to compare against.",
)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    help="Where to write the report (default RUN_DIR/eval.json).",
)
@click.option(
    "--trunk",
    type=click.Path(path_type=str),
    default=None,
    help="Evaluate with this shared trunk (e.g. a merge of a single-task run's trunk.safetensors) and each task's own head.",
)
@click.option(
    "--norm-stats",
    is_flag=True,
    help="With --trunk: re-estimate the trunk's batch-norm running statistics on the training inputs first.",
)
def eval_command(
    run_dir: str, baseline: str | None, out_file: str | None, trunk: str | None, norm_stats: bool
) -> None:
    """Evaluate the selected checkpoint of RUN_DIR (or a checkpoint folder in it) on val and test."""
    from polytask.jobs.eval import run_eval

    report, written = run_eval(
        run_dir, baseline=baseline, out_file=out_file, trunk=trunk, norm_stats=norm_stats
    )
    _summary(report)
    click.echo(str(written))
