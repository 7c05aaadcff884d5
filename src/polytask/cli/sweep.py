"""``polytask sweep CONFIG --seeds 0 1 2 --grid KEY=V1,V2 --out DIR``: seeds × grid points."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from polytask.jobs.sweep import SweepRun

__all__ = ["sweep_command"]

_SEED = re.compile(r"-?\d+")


class SeedsCommand(click.Command):
    """Reads ``--seeds 0 1 2`` as ``--seeds 0 --seeds 1 --seeds 2`` (click options take a fixed
    number of values)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        spread: list[str] = []
        in_seeds = False
        for arg in args:
            if arg == "--seeds":
                in_seeds = True
                spread.append(arg)
            elif in_seeds and _SEED.fullmatch(arg):
                spread += [arg] if spread[-1] == "--seeds" else ["--seeds", arg]
            else:
                in_seeds = False
                spread.append(arg)
        return super().parse_args(ctx, spread)


def _say(run: SweepRun) -> None:
    from polytask.jobs.sweep import point_label

    what = "single-task baselines" if not run.point else point_label(run.point)
    means = "  ".join(f"{k} {v:.4f}" for k, v in run.report.means["test"].items())
    dm = run.delta_m()
    tail = "" if dm is None else f"  Δm {dm:+.2f}%"
    done = "cached" if run.cached else f"{run.report.seconds or 0:.0f} s"
    click.echo(f"seed {run.seed} {what}: test {means}{tail}  ({done})", err=True)


@click.command("sweep", cls=SeedsCommand)
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--seeds", type=int, multiple=True, required=True, help="Seeds, e.g. --seeds 0 1 2.")
@click.option(
    "--grid",
    multiple=True,
    help="KEY=V1,V2,...: a config key (dotted) and its values (YAML scalars); repeat for more "
    "keys, every combination is a grid point. E.g. --grid balancing.method=ew,famo,upgrad.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Sweep folder: runs cached by config hash, sweep.json, summary.md.",
)
@click.option("--progress/--no-progress", default=True, help="Progress bars while training.")
def sweep_command(
    config: Path, seeds: tuple[int, ...], grid: tuple[str, ...], out: Path, progress: bool
) -> None:
    """Train CONFIG (YAML) at every grid point for every seed, against shared single-task
    baselines (one per seed), and summarise over seeds.

    Every run is cached under OUT by the hash of its effective config: a rerun reads finished
    runs back, resumes unfinished ones and trains only what changed.
    """
    from polytask.jobs.sweep import grid_points, parse_grid, run_sweep

    points = grid_points(parse_grid(grid))
    run_sweep(config, out, seeds=seeds, points=points, progress=progress, on_run=_say)
    click.echo(str(out / "summary.md"))
    click.echo(str(out / "sweep.json"))
