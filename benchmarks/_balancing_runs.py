"""Shared driver of the balancing benchmarks: every method x seeds, cached per run under .bench/.

A run is one ``run_train`` call on a YAML written next to its output folder. A finished run
(``report.json`` present and the YAML unchanged) is read back instead of retrained, so an
interrupted benchmark resumes where it stopped. The single-task baselines of each seed are a run
like the others (``single_task=True``); each method's Δm / Δp is taken against them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from polytask._core import write_text
from polytask.config.balancing import BALANCING_METHODS
from polytask.jobs.train import run_train

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"


def method_mode(name: str) -> str:
    """``features`` wherever the method supports it (MGDA-UB), else ``exact`` (DB-MTL)."""
    return "features" if "features" in BALANCING_METHODS[name].modes else "exact"


def method_kind(name: str) -> str:
    needs = BALANCING_METHODS[name].needs
    if needs <= {"losses", "grad_norms"}:
        return "loss weighting"
    if "gramian" in needs:
        return "Gramian weighting"
    return "Jacobian aggregator"


def recipe(epochs: int, selection: str) -> dict[str, Any]:
    """The model and training recipe both balancing benchmarks share (MLP 512-256, AdamW)."""
    return {
        "model": {"trunk": {"kind": "mlp", "hidden": [512, 256], "dropout": 0.2}},
        "train": {
            "epochs": epochs,
            "batch_size": 256,
            "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-2},
            "scheduler": {"name": "constant"},
            "grad_clip": 5.0,
            "selection": selection,
            "patience": 3,
        },
    }


def parse_args(doc: str, default_epochs: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(BALANCING_METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=default_epochs)
    parser.add_argument(
        "--exact", nargs="*", default=[], help="methods to also run in exact mode (a check)"
    )
    parser.add_argument("--quick", action="store_true", help="2 methods, 1 seed, 1 epoch; no doc")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true", help="do not write docs/results")
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="train nothing: build the table from the finished runs under --out",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.methods) - set(BALANCING_METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; valid: {', '.join(BALANCING_METHODS)}")
    if args.quick:
        args.methods, args.seeds, args.epochs, args.exact = ["ew", "upgrad"], [0], 1, []
        args.no_write = True
    return args


def _cached_run(
    cfg: dict[str, Any], out: Path, single_task: bool, baseline: Path | None, cached_only: bool
) -> dict[str, Any] | None:
    cfg_path = out.parent / f"{out.name}.yaml"
    text = yaml.safe_dump(cfg, sort_keys=True)
    report_path = out / "report.json"
    if report_path.is_file() and cfg_path.is_file() and cfg_path.read_text() == text:
        report: dict[str, Any] = json.loads(report_path.read_text())
        if baseline is None or "comparison" in report:
            return report
    if cached_only:
        return None
    out.mkdir(parents=True, exist_ok=True)
    write_text(cfg_path, text)
    return run_train(
        cfg_path,
        out,
        single_task=single_task,
        overwrite=True,
        progress=False,
        baseline=baseline,
    )


@dataclass
class Grid:
    """Results of every (method, mode) x seed, plus the per-seed baselines."""

    metrics: list[str]
    baselines: dict[int, dict[str, Any]] = field(default_factory=dict)
    runs: dict[tuple[str, str], dict[int, dict[str, Any]]] = field(default_factory=dict)


def run_grid(
    args: argparse.Namespace,
    name: str,
    make_config: Callable[[int, dict[str, Any] | None], dict[str, Any]],
    metrics: list[str],
) -> Grid:
    """Baselines then every method for every seed; prints one line per run."""
    torch.set_num_threads(args.threads)
    out = args.out or REPO / ".bench" / f"balancing_{name}"
    grid = Grid(metrics)
    plan = [(m, method_mode(m)) for m in args.methods]
    plan += [(m, "exact") for m in args.exact if (m, "exact") not in plan]
    for seed in args.seeds:
        base_cfg = make_config(seed, None)
        t0 = time.perf_counter()
        single = _cached_run(base_cfg, out / f"seed{seed}" / "single", True, None, args.cached_only)
        if single is None:
            print(f"[{name}] seed {seed}: no finished baselines, seed left out", flush=True)
            continue
        grid.baselines[seed] = single
        means = grid.baselines[seed]["means"]["test"]
        print(
            f"[{name}] seed {seed} single-task: "
            + "  ".join(f"{k} {means[k]:.4f}" for k in metrics)
            + f"  ({grid.baselines[seed]['seconds']:.0f} s; {time.perf_counter() - t0:.0f} s now)",
            flush=True,
        )
        baseline = out / f"seed{seed}" / "single" / "report.json"
        for method, mode in plan:
            cfg = make_config(seed, {"method": method, "mode": mode, "every": 1})
            folder = out / f"seed{seed}" / f"{method}-{mode}"
            report = _cached_run(cfg, folder, False, baseline, args.cached_only)
            if report is None:
                print(f"[{name}] seed {seed} {method} {mode}: not run, left out", flush=True)
                continue
            grid.runs.setdefault((method, mode), {})[seed] = report
            comp = report["comparison"]["test"]
            print(
                f"[{name}] seed {seed} {method:12s} {mode:8s} "
                + "  ".join(f"{k} {report['means']['test'][k]:.4f}" for k in metrics)
                + f"  dm {comp['delta_m']:+7.2f}%  dp {comp['delta_p']:+7.2f}%"
                + f"  {report['seconds']:.1f} s  step {report['selection']['best_step']}"
                + f"/{report['training']['steps']}",
                flush=True,
            )
    return grid


def _ms(values: list[float], digits: int = 4) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _pm(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:+.2f}"
    return f"{statistics.mean(values):+.2f} ± {statistics.stdev(values):.2f}"


def table(grid: Grid, metric_labels: dict[str, str]) -> list[str]:
    """Markdown rows sorted by mean test Δm (best first)."""
    head = [
        "method",
        "kind",
        "mode",
        *metric_labels.values(),
        "Δm % (↓)",
        "Δm − EW, same seed",
        "Δp % (↑)",
        "s / run",
    ]
    ew_dm = {
        s: r["comparison"]["test"]["delta_m"]
        for s, r in grid.runs.get(("ew", method_mode("ew")), {}).items()
    }
    rows = []
    for (method, mode), by_seed in grid.runs.items():
        reports = [by_seed[s] for s in sorted(by_seed)]
        dm = [r["comparison"]["test"]["delta_m"] for r in reports]
        dp = [r["comparison"]["test"]["delta_p"] for r in reports]
        cells = [_ms([r["means"]["test"][k] for r in reports]) for k in metric_labels]
        secs = statistics.mean(r["seconds"] for r in reports)
        label = f"{method} (n={len(reports)})" if len(reports) != len(grid.baselines) else method
        paired = [
            r["comparison"]["test"]["delta_m"] - ew_dm[s] for s, r in by_seed.items() if s in ew_dm
        ]
        vs_ew = _pm(paired) if paired else "—"
        rows.append(
            (
                statistics.mean(dm),
                [label, method_kind(method), mode, *cells, _pm(dm), vs_ew, _pm(dp), f"{secs:.1f}"],
            )
        )
    rows.sort(key=lambda r: r[0])
    bases = [grid.baselines[s] for s in sorted(grid.baselines)]
    base_cells = [_ms([b["means"]["test"][k] for b in bases]) for k in metric_labels]
    base_secs = statistics.mean(b["seconds"] for b in bases)
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        "| single-task baselines | — | — | "
        + " | ".join(base_cells)
        + f" | 0 | — | 0 | {base_secs:.1f} (all tasks) |",
    ]
    lines += ["| " + " | ".join(cells) + " |" for _, cells in rows]
    return lines


def per_task_table(grid: Grid, metric: str, methods: list[str]) -> list[str]:
    """Per-task test ``metric`` (mean over seeds) for the baselines and a few methods."""
    tasks = list(next(iter(grid.baselines.values()))["metrics"]["test"])
    cols: list[tuple[str, list[dict[str, Any]]]] = [
        ("single-task", [grid.baselines[s] for s in sorted(grid.baselines)])
    ]
    for key, by_seed in grid.runs.items():
        if key[0] in methods:
            cols.append((f"{key[0]}-{key[1]}", [by_seed[s] for s in sorted(by_seed)]))
    lines = [
        "| task | " + " | ".join(c for c, _ in cols) + " |",
        "|" + "---|" * (len(cols) + 1),
    ]
    for t in tasks:
        vals = []
        for _, reports in cols:
            xs = [r["metrics"]["test"][t][metric] for r in reports]
            vals.append(f"{statistics.mean(xs):.4f}")
        lines.append(f"| {t} | " + " | ".join(vals) + " |")
    return lines


def reading(grid: Grid) -> list[str]:
    """Facts read off the grid: who beats EW, where the published shape holds or not."""
    stats: dict[str, tuple[float, float]] = {}
    for (method, mode), by_seed in grid.runs.items():
        dm = [r["comparison"]["test"]["delta_m"] for r in by_seed.values()]
        sd = statistics.stdev(dm) if len(dm) > 1 else float("nan")
        stats[f"{method}-{mode}" if mode != method_mode(method) else method] = (
            statistics.mean(dm),
            sd,
        )
    order = sorted(stats, key=lambda k: stats[k][0])
    lines = []
    if "ew" in stats:
        ew, ew_sd = stats["ew"]
        better = [k for k in order if stats[k][0] < ew]
        worse = [k for k in order if stats[k][0] > ew]
        sd_text = f"± {ew_sd:.2f} over seeds" if ew_sd == ew_sd else "one seed"
        lines += [
            f"* EW: Δm {ew:+.2f} % ({sd_text}), rank {order.index('ew') + 1} of {len(order)}.",
            f"* Lower (better) mean Δm than EW: {', '.join(better) or 'none'}.",
            f"* Lose to EW (higher mean Δm): {', '.join(worse) or 'none'}.",
        ]
    ew_runs = grid.runs.get(("ew", method_mode("ew")), {})
    if len(ew_runs) > 1:
        always, never = [], []
        for (method, mode), by_seed in grid.runs.items():
            if method == "ew" or set(by_seed) != set(ew_runs):
                continue
            diff = [
                by_seed[s]["comparison"]["test"]["delta_m"]
                - ew_runs[s]["comparison"]["test"]["delta_m"]
                for s in by_seed
            ]
            key = f"{method}-{mode}" if mode != method_mode(method) else method
            if all(d < 0 for d in diff):
                always.append(key)
            elif all(d > 0 for d in diff):
                never.append(key)
        lines += [
            f"* Same-seed comparison with EW (seeds {', '.join(map(str, sorted(ew_runs)))}): "
            f"better than EW on every seed: {', '.join(always) or 'none'}; worse on every seed: "
            f"{', '.join(never) or 'none'}; the rest are on both sides.",
        ]
    beats_single = [k for k in order if stats[k][0] < 0]
    lines.append(
        "* Better than the single-task baselines on average (Δm < 0): "
        + (", ".join(beats_single) or "none")
        + "."
    )
    sds = [s for _, s in stats.values() if s == s]
    if sds:
        means = [m for m, _ in stats.values()]
        lines.append(
            f"* Seed noise: the median over methods of the std of Δm over seeds is "
            f"{statistics.median(sds):.2f} points; the method means span "
            f"{min(means):+.2f} to {max(means):+.2f}."
        )
    if {"famo", "nash_mtl", "ew"} <= set(stats):
        ranks = {k: order.index(k) + 1 for k in ("nash_mtl", "famo", "ew")}
        holds_top = max(ranks["nash_mtl"], ranks["famo"]) <= 2
        holds_ew = ranks["ew"] == len(order)
        lines.append(
            f"* Published shape (FAMO paper, QM9 with graph networks: Nash-MTL and FAMO best Δm, "
            f"EW worst): here Nash-MTL ranks {ranks['nash_mtl']}, FAMO {ranks['famo']}, EW "
            f"{ranks['ew']} of {len(order)}. 'Nash-MTL/FAMO best' "
            f"{'holds' if holds_top else 'does not hold'}; 'EW worst' "
            f"{'holds' if holds_ew else 'does not hold'}."
        )
    return lines


def write_doc(path: Path, title: str, intro: list[str], grid: Grid, tables: list[str]) -> None:
    text = "\n".join(
        [
            f"# {title}",
            "",
            *intro,
            "",
            *tables,
            "",
            "## Reading (generated from the numbers above)",
            "",
            *reading(grid),
            "",
        ]
    )
    write_text(path, text)
