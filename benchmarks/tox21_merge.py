"""Tox21: joint multi-task training against merging the single-task trunks, same evaluation.

For each seed, the single-task run and the joint run of ``benchmarks/tox21.py`` (its sweep
under ``.bench/tox21``, read back without training) are reused. Every merge runs from the
single-task run through ``polytask merge`` with ``run:`` (the run's base and per-task trunks;
Fisher, RegMean and AdaMerging also take the run's trunk, each task's own head and a few batches
of each task), and is evaluated by ``polytask eval RUN --trunk MERGED``: every task with the
merged trunk and its own head, on the same split, with Δm against the single-task models.
Scaling coefficients are chosen on the mean validation ROC-AUC from small grids. Writes
``docs/results/tox21_merge.md``.

    python benchmarks/tox21.py --seeds 0 1 2          # the runs (once)
    python benchmarks/tox21_merge.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from _sections import write_section
from polytask._core import PolytaskError
from polytask.eval import Report, format_mean_std, load_report
from polytask.jobs.eval import run_eval
from polytask.jobs.merge import run_merge
from tox21 import OUT, sweep

REPO = Path(__file__).resolve().parents[1]

# label → (method, options grid (one entry: no choice), data for the data-based methods, buffers)
TA_GRID = [{"lam": lam} for lam in (0.1, 0.2, 0.3, 0.5)]
TIES_GRID = [{"density": 0.2, "lam": lam} for lam in (0.3, 0.5, 1.0)]
ROWS = {"split": "train", "batches": 4, "batch_size": 64}
TEST_ROWS = {"split": "test", "batches": 4, "batch_size": 64}
ADA = {"steps": 50, "lr": 0.01, "likelihood": "bernoulli"}
ADA_12 = {"steps": 50, "lr": 0.005, "init": 0.05, "clamp": [0.0, 1 / 12], "likelihood": "bernoulli"}
Method = tuple[str, list[dict[str, Any]], dict[str, Any] | None, str]
_ROWS: list[tuple[str, str, list[dict[str, Any]], dict[str, Any] | None, list[str]]] = [
    ("averaging", "average", [{}], None, ["recompute", "average"]),
    ("task arithmetic", "task_arithmetic", TA_GRID, None, ["recompute", "average", "base"]),
    ("TIES (density 0.2)", "ties", TIES_GRID, None, ["recompute", "average"]),
    ("Fisher (4 × 64 train rows per task)", "fisher", [{"likelihood": "bernoulli"}], ROWS,
     ["recompute"]),
    ("RegMean (α 0.9, 4 × 64 train rows per task)", "regmean", [{"alpha": 0.9}], ROWS,
     ["recompute"]),
    ("AdaMerging task-wise (50 steps, unlabelled test inputs)", "adamerging", [ADA], TEST_ROWS,
     ["recompute", "average"]),
    ("AdaMerging task-wise, λ_t ≤ 1/12 (Σ λ ≤ 1)", "adamerging", [ADA_12], TEST_ROWS,
     ["recompute"]),
]  # fmt: skip
METHODS: dict[str, Method] = {
    f"{name}, buffers: {policy}": (method, grid, data, policy)
    for name, method, grid, data, policies in _ROWS
    for policy in policies
}


def _merge_and_eval(
    run: Path,
    label: str,
    method: str,
    options: dict[str, Any],
    data: dict[str, Any] | None,
    buffers: str,
    tmp: Path,
) -> tuple[Report | None, float]:
    """The merged model's report (None when the merge or the evaluation refuses it, e.g. a
    non-finite tensor) and the merge's seconds. ``buffers: recompute`` re-estimates the
    batch-norm statistics inside the merge (one pass over the training inputs)."""
    cfg: dict[str, Any] = {"method": method, "options": options, "run": str(run)}
    cfg["buffers"] = buffers
    if data is not None:
        cfg["data"] = data
    (tmp / "merge.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp / "merged"
    start = time.perf_counter()
    try:
        run_merge(tmp / "merge.yaml", out, overwrite=True, progress=False)
        seconds = time.perf_counter() - start
        report, _ = run_eval(
            run, trunk=out, baseline=run / "report.json", out_file=tmp / "eval.json"
        )
    except PolytaskError as exc:
        print(f"  {label} {options}: {exc}", flush=True)
        return None, time.perf_counter() - start
    return report, seconds


def _mean(report: Report, split: str) -> float:
    return float(report.means[split]["roc_auc"])


def _runs(args: argparse.Namespace) -> list[tuple[Report, Path, Report]]:
    """(joint report, single-task run folder, its report) per seed."""
    if args.pair:
        if len(args.pair) != len(args.seeds):
            sys.exit("give one --pair per seed")
        return [
            (load_report(j / "report.json"), s, load_report(s / "report.json"))
            for j, s in args.pair
        ]
    runs = sweep(args.seeds, args.runs, cached_only=True)  # trains nothing
    out = []
    for seed in args.seeds:
        joint = runs.cell({}, seed)
        base = joint and runs.baseline_of(joint)
        if joint is None or base is None:
            sys.exit(
                f"seed {seed} is missing: run `python benchmarks/tox21.py --seeds {seed}` first"
            )
        out.append((joint.report, base.folder.path, base.report))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--pair", nargs=2, type=Path, action="append", metavar=("JOINT_RUN", "SINGLE_RUN"),
        help="finished run folders of one seed (one --pair per entry of --seeds), instead of "
        "looking them up in the sweep under --runs (e.g. runs of an older config schema)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    rows: dict[str, list[tuple[float, float, str, float]]] = {}
    reference: dict[str, list[float]] = {"single-task models": [], "joint multi-task model": []}
    failed: dict[str, list[int]] = {}
    joint_delta: list[float] = []
    for seed, (joint_report, single, single_report) in zip(args.seeds, _runs(args)):
        reference["single-task models"].append(_mean(single_report, "test"))
        reference["joint multi-task model"].append(_mean(joint_report, "test"))
        comp = (joint_report.comparison or {})["test"]
        joint_delta.append(float(comp.delta_m or 0.0))
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            for label, (method, grid, data, buffers) in METHODS.items():
                best: tuple[float, dict[str, Any], dict[str, Any], float] | None = None
                for options in grid:
                    report, seconds = _merge_and_eval(
                        single, label, method, options, data, buffers, tmp
                    )
                    if report is None:
                        continue
                    val = _mean(report, "val")
                    print(f"seed {seed} {label} {options}: val {val:.4f}", flush=True)
                    if best is None or val > best[0]:
                        best = (val, options, report, seconds)
                if best is None:
                    failed.setdefault(label, []).append(seed)
                    continue
                _, options, report, seconds = best
                chosen = ", ".join(f"{k} {v}" for k, v in options.items() if k == "lam") or "—"
                delta = float((report.comparison or {})["test"].delta_m or 0.0)
                rows.setdefault(label, []).append((_mean(report, "test"), delta, chosen, seconds))
                print(f"seed {seed} {label}: test {_mean(report, 'test'):.4f} Δm {delta:+.2f}")
    wall = time.perf_counter() - wall
    text = _table(args, reference, rows, failed, joint_delta, wall)
    print(text)
    if not args.no_write:  # the table section only: the written reading below it is kept
        title, body = text.split("\n", 1)
        write_section(
            REPO / "docs" / "results" / "tox21_merge.md", "table", body.strip(), title[2:]
        )


def _pm(values: list[float], signed: bool = False) -> str:
    """mean ± std, 4 decimals (differences: 2, signed); one seed shows ± 0."""
    return format_mean_std(values, 2 if signed else 4, signed=signed, zero_std=True)


def _table(
    args: argparse.Namespace,
    reference: dict[str, list[float]],
    rows: dict[str, list[tuple[float, float, str, float]]],
    failed: dict[str, list[int]],
    joint_delta: list[float],
    wall: float,
) -> str:
    seeds = " ".join(map(str, args.seeds))
    lines = [
        "# Tox21: joint multi-task training against merged single-task trunks",
        "",
        f"Command: `python benchmarks/tox21_merge.py --seeds {seeds}` (after"
        f" `python benchmarks/tox21.py --seeds {seeds}`), CPU, {args.threads} threads,"
        f" {wall / 60:.0f} min wall (merges and evaluations; the runs are cached).",
        "",
        "* Runs: the single-task and joint runs of `benchmarks/tox21.py` (`examples/tox21.yaml`:"
        " ECFP4 4096 bits, MLP 1024-512 with batch norm and dropout 0.5, 40 epochs, selection on"
        " mean validation ROC-AUC; each seed re-draws the 80/10/10 split). All single-task models"
        " of a seed start from the same trunk initialisation (`base/trunk.safetensors`).",
        "* Merges: `polytask merge` with `run:` over the 12 task trunks; evaluation"
        " `polytask eval RUN --trunk MERGED`: the merged trunk with each task's own head. Each"
        " row names its batch-norm running-statistics policy (`buffers:`): `recompute` (the"
        " default with `run:`) re-estimates them with the merged weights on the training inputs"
        " (one pass over the training split) inside the merge; `average` writes the fine-tuned"
        " models' mean; `base` copies the base's. None of them extrapolates the statistics.",
        "* λ (scaling) chosen per seed on the mean validation ROC-AUC: task arithmetic"
        " {0.1, 0.2, 0.3, 0.5}, TIES {0.3, 0.5, 1.0}.",
        "* Δm against the same seed's single-task models (lower is better), test split.",
        "",
        "| model | mean test ROC-AUC | Δm % (↓) | chosen | merge s (mean) |",
        "|---|---|---|---|---|",
    ]
    for label, values in reference.items():
        delta = "0" if label.startswith("single") else _pm(joint_delta, signed=True)
        lines.append(f"| {label} | {_pm(values)} | {delta} | — | — |")
    for label, values in rows.items():
        chosen = sorted({c for _, _, c, _ in values})
        seconds = statistics.mean(s for _, _, _, s in values)
        lines.append(
            f"| {label} | {_pm([v for v, _, _, _ in values])} | "
            f"{_pm([d for _, d, _, _ in values], signed=True)} | {'; '.join(chosen)} | {seconds:.0f} |"
        )
    for label, seeds_failed in failed.items():
        lines.append(
            f"| {label} | refused at every λ (seeds {', '.join(map(str, seeds_failed))}) | — | — | — |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
