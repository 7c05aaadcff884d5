"""``polytask affinity``: measure which tasks help each other and suggest groups."""

from __future__ import annotations

import math

import click

from polytask.affinity import AffinityReport

TOP_PAIRS = 3


def summary_lines(report: AffinityReport) -> list[str]:
    """Top pairs of every matrix and the suggested groups for each G (plain text)."""
    lines = []
    for name, mat in report.matrices.items():
        v, names, m = mat.values, mat.task_names, len(mat.task_names)
        symmetric = bool(v.isfinite().all()) and bool((v - v.T).abs().max() < 1e-9)
        pairs = [
            (float(v[i, j]), i, j)
            for i in range(m)
            for j in range(m)
            if i != j and (j > i or not symmetric) and math.isfinite(float(v[i, j]))
        ]
        pairs.sort(reverse=True)
        arrow = " ~ " if symmetric else " -> "
        top = ", ".join(f"{names[i]}{arrow}{names[j]} {s:+.3g}" for s, i, j in pairs[:TOP_PAIRS])
        lines.append(f"{name}: top pairs: {top}")
        for key, grouping in report.groupings.items():
            if key.startswith(f"{name}/"):
                groups = " | ".join(", ".join(g) for g in grouping.named())
                lines.append(
                    f"  groups {key.split('/', 1)[1]}: {groups}  (score {grouping.best_score:.4g})"
                )
    look = report.metadata.get("lookahead")
    if look:
        lines.append(
            f"lookahead cost: {look['cost']['seconds']:.2f} s over {look['cost']['measurements']} "
            f"measurements (+{100 * look['extra_cost_fraction']:.1f}% of training time)"
        )
    return lines


@click.command("affinity")
@click.argument("config", type=click.Path(dir_okay=False, path_type=str))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Folder for affinity.json and the heatmaps.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing, non-empty --out folder.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def affinity_command(config: str, out: str, overwrite: bool, no_progress: bool) -> None:
    """Train on CONFIG (a train config plus an `affinity:` section) for a measurement budget and
    write task-affinity matrices, heatmaps, suggested groups and source rankings to OUT."""
    from polytask.jobs.affinity import run_affinity

    report = run_affinity(config, out, overwrite=overwrite, progress=not no_progress)
    for line in summary_lines(report):
        click.echo(line)
    click.echo(f"{out}/affinity.json")
