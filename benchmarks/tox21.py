"""Tox21: multi-task vs single-task baselines, mean test ROC-AUC over the 12 tasks, 3 seeds.

Each seed re-draws the random 80/10/10 split and the initialisation. The multi-task model and the
single-task baselines (one model per task, same recipe: ``polytask train --single-task``) come
from ``examples/tox21.yaml``, trained by :func:`polytask.jobs.sweep.run_sweep` (finished runs under
``--out`` are reused). Writes ``docs/results/tox21.md``.

    python benchmarks/tox21.py [--seeds 0 1 2] [--out .bench/tox21]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from polytask._core import write_text
from polytask.eval import format_mean_std
from polytask.jobs.sweep import SweepResult, SweepRun, run_sweep

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tox21.yaml"
OUT = REPO / ".bench" / "tox21"


def sweep(seeds: Sequence[int], out: Path = OUT, cached_only: bool = False) -> SweepResult:
    """The example config at every seed, against the same seed's single-task baselines."""
    return run_sweep(
        yaml.safe_load(EXAMPLE.read_text()), out, seeds=seeds, base_dir=EXAMPLE.parent,
        cached_only=cached_only, on_run=None if cached_only else _say, write=not cached_only,
    )  # fmt: skip


def _say(run: SweepRun) -> None:
    if not run.point and run.baseline is None:  # a baseline: said with its multi-task run
        return
    comp = (run.report.comparison or {})["test"]
    single = f"  single-task {comp.baseline_means['roc_auc']:.4f}"
    print(
        f"seed {run.seed}: multi-task {run.value('roc_auc'):.4f}{single}  "
        f"Δm {comp.delta_m:+.2f}%  Δp {comp.delta_p:+.2f}%",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--reuse", action="store_true", help="(always on) reuse finished runs under --out"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = sweep(args.seeds, args.out)
    text = "\n".join(page(result, args.seeds))
    print(text)
    write_text(REPO / "docs" / "results" / "tox21.md", text)


def page(result: SweepResult, seeds: Sequence[int]) -> list[str]:
    base = yaml.safe_load(EXAMPLE.read_text())
    rows, per_task = [], {}
    for seed in seeds:
        multi = result.cell({}, seed)
        single = multi and result.baseline_of(multi)
        assert multi is not None and single is not None and multi.report.comparison is not None
        comp = multi.report.comparison["test"]
        rows.append((seed, multi.value("roc_auc"), single.value("roc_auc"), comp.delta_m,
                     comp.delta_p, (multi.report.training or {})["seconds"]))  # fmt: skip
        for task, m in multi.report.metrics["test"].items():
            per_task.setdefault(task, []).append(
                (m["roc_auc"], single.report.metrics["test"][task]["roc_auc"])
            )
    ms = format_mean_std
    feat = base["data"]["featurizer"]
    return [
        "# Tox21: multi-task vs single-task (mean test ROC-AUC over 12 tasks)",
        "",
        f"Command: `python benchmarks/tox21.py --seeds {' '.join(map(str, seeds))}` (config: `examples/tox21.yaml`:",
        f"ECFP radius {feat['radius']}, {feat['bits']} bits; trunk {base['model']['trunk']};",
        "random 80/10/10 split re-drawn per seed; model selected on mean validation ROC-AUC).",
        "",
        "| seed | multi-task | single-task | Δm % (lower better) | Δp % (higher better) | multi-task train s |",
        "|---|---|---|---|---|---|",
        *[
            f"| {s} | {m:.4f} | {b:.4f} | {dm:+.2f} | {dp:+.2f} | {t:.0f} |"
            for s, m, b, dm, dp, t in rows
        ],
        f"| **mean ± std** | **{ms([r[1] for r in rows])}** | **{ms([r[2] for r in rows])}** | {ms([r[3] for r in rows])} | {ms([r[4] for r in rows])} | |",
        "",
        "Per task (mean over seeds):",
        "",
        "| task | multi-task | single-task |",
        "|---|---|---|",
        *[
            f"| {t} | {statistics.mean(a for a, _ in v):.4f} | {statistics.mean(b for _, b in v):.4f} |"
            for t, v in per_task.items()
        ],
        "",
        "Target: multi-task ≥ 0.82 mean test ROC-AUC and above the single-task baselines.",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
