"""Shared driver of the balancing benchmarks: every method × seeds as one sweep under .bench/.

The grid is :func:`polytask.jobs.sweep.run_sweep` over ``balancing.method`` / ``balancing.mode``:
every run is cached by the hash of its config (an interrupted benchmark resumes where it
stopped), the single-task baselines are trained once per seed and each method's Δm / Δp is taken
against them. This module designs the grid and writes the tables.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from polytask._core import write_text
from polytask.config.balancing import BALANCING_METHODS, method_class
from polytask.eval import Report, format_mean_std, mean_std, paired_difference
from polytask.jobs.sweep import SweepResult, SweepRun, run_sweep

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
Runs = dict[tuple[str, str], dict[int, Report]]  # (method, mode) -> {seed: report}


def method_mode(name: str) -> str:
    """``features`` wherever the method supports it (MGDA-UB), else ``exact`` (DB-MTL)."""
    return "features" if "features" in method_class(name).modes else "exact"


def method_kind(name: str) -> str:
    needs = method_class(name).needs
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


def point(method: str, mode: str) -> dict[str, object]:
    return {"balancing.method": method, "balancing.mode": mode, "balancing.every": 1}


def run_grid(
    args: argparse.Namespace,
    name: str,
    config: dict[str, Any],
    metrics: list[str],
    per_seed: Callable[[int], Mapping[str, object]] | None = None,
) -> SweepResult:
    """Baselines then every method for every seed (``config`` at its ``seed``); prints one
    line per run."""
    torch.set_num_threads(args.threads)
    plan = [(m, method_mode(m)) for m in args.methods]
    plan += [(m, "exact") for m in args.exact if (m, "exact") not in plan]

    def say(run: SweepRun) -> None:
        r = run.report
        values = "  ".join(f"{k} {r.means['test'][k]:.4f}" for k in metrics)
        if not run.point:
            print(
                f"[{name}] seed {run.seed} single-task: {values}  ({r.seconds:.0f} s)", flush=True
            )
            return
        comp = (r.comparison or {})["test"]
        method, mode = run.point["balancing.method"], run.point["balancing.mode"]
        print(
            f"[{name}] seed {run.seed} {method:12s} {mode:8s} {values}"
            f"  dm {comp.delta_m:+7.2f}%  dp {comp.delta_p:+7.2f}%  {r.seconds:.1f} s"
            f"  step {(r.selection or {})['best_step']}/{(r.training or {})['steps']}",
            flush=True,
        )

    return run_sweep(
        config, args.out or REPO / ".bench" / f"balancing_{name}", seeds=args.seeds,
        points=[point(m, mode) for m, mode in plan], per_seed=per_seed,
        cached_only=args.cached_only, on_run=say,
    )  # fmt: skip


def by_method(result: SweepResult) -> Runs:
    """``{(method, mode): {seed: report}}`` in grid order."""
    runs: Runs = {}
    for cell in result.cells:
        key = (str(cell.point["balancing.method"]), str(cell.point["balancing.mode"]))
        runs.setdefault(key, {})[cell.seed] = cell.report
    return {k: dict(sorted(v.items())) for k, v in runs.items()}


def baselines(result: SweepResult) -> dict[int, Report]:
    return {b.seed: b.report for b in sorted(result.baselines, key=lambda b: b.seed)}


def _dm(report: Report) -> float:
    comp = (report.comparison or {})["test"]
    assert comp.delta_m is not None
    return comp.delta_m


def _dp(report: Report) -> float:
    comp = (report.comparison or {})["test"]
    assert comp.delta_p is not None
    return comp.delta_p


def table(result: SweepResult, metric_labels: dict[str, str]) -> list[str]:
    """Markdown rows sorted by mean test Δm (best first)."""
    head = ["method", "kind", "mode", *metric_labels.values(), "Δm % (↓)", "Δm − EW, same seed",
            "Δp % (↑)", "s / run"]  # fmt: skip
    runs, bases = by_method(result), baselines(result)
    ew_dm = {s: _dm(r) for s, r in runs.get(("ew", method_mode("ew")), {}).items()}
    rows = []
    for (method, mode), by_seed in runs.items():
        reports = list(by_seed.values())
        dm = [_dm(r) for r in reports]
        cells = [format_mean_std([r.means["test"][k] for r in reports], empty="—")
                 for k in metric_labels]  # fmt: skip
        secs = statistics.mean(r.seconds or 0.0 for r in reports)
        label = f"{method} (n={len(reports)})" if len(reports) != len(bases) else method
        shared = {s: _dm(r) for s, r in by_seed.items() if s in ew_dm}
        vs_ew = paired_difference(shared, ew_dm).format(2) if shared else "—"
        signed = [format_mean_std(v, 2, signed=True) for v in (dm, [_dp(r) for r in reports])]
        row = [label, method_kind(method), mode, *cells, signed[0], vs_ew, signed[1], f"{secs:.1f}"]
        rows.append((mean_std(dm)[0], row))
    rows.sort(key=lambda r: r[0])
    base = list(bases.values())
    base_cells = [format_mean_std([b.means["test"][k] for b in base], empty="—") for k in metric_labels]  # fmt: skip
    base_secs = statistics.mean(b.seconds or 0.0 for b in base)
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        "| single-task baselines | — | — | "
        + " | ".join(base_cells)
        + f" | 0 | — | 0 | {base_secs:.1f} (all tasks) |",
    ]
    lines += ["| " + " | ".join(cells) + " |" for _, cells in rows]
    return lines


def per_task_table(result: SweepResult, metric: str, methods: list[str]) -> list[str]:
    """Per-task test ``metric`` (mean over seeds) for the baselines and a few methods."""
    bases = baselines(result)
    tasks = list(next(iter(bases.values())).metrics["test"])
    cols: list[tuple[str, list[Report]]] = [("single-task", list(bases.values()))]
    for key, by_seed in by_method(result).items():
        if key[0] in methods:
            cols.append((f"{key[0]}-{key[1]}", list(by_seed.values())))
    lines = [
        "| task | " + " | ".join(c for c, _ in cols) + " |",
        "|" + "---|" * (len(cols) + 1),
    ]
    for t in tasks:
        vals = [f"{mean_std(r.metrics['test'][t][metric] for r in reports)[0]:.4f}" for _, reports in cols]  # fmt: skip
        lines.append(f"| {t} | " + " | ".join(vals) + " |")
    return lines


def reading(result: SweepResult) -> list[str]:
    """Facts read off the grid: who beats EW, where the published shape holds or not."""
    runs = by_method(result)

    def key(method: str, mode: str) -> str:
        return f"{method}-{mode}" if mode != method_mode(method) else method

    stats = {key(*k): mean_std(_dm(r) for r in by_seed.values()) for k, by_seed in runs.items()}
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
    ew_runs = runs.get(("ew", method_mode("ew")), {})
    if len(ew_runs) > 1:
        always, never = [], []
        ew_dm = {s: _dm(r) for s, r in ew_runs.items()}
        for (method, mode), by_seed in runs.items():
            if method == "ew" or set(by_seed) != set(ew_runs):
                continue
            d = paired_difference({s: _dm(r) for s, r in by_seed.items()}, ew_dm, higher_is_better=False)  # fmt: skip
            if d.wins == d.n:
                always.append(key(method, mode))
            elif d.losses == d.n:
                never.append(key(method, mode))
        lines += [
            f"* Same-seed comparison with EW (seeds {', '.join(map(str, sorted(ew_runs)))}): "
            f"better than EW on every seed: {', '.join(always) or 'none'}; worse on every seed: "
            f"{', '.join(never) or 'none'}; the rest are on both sides.",
        ]
    return lines + _spread(stats, order)


def _spread(stats: dict[str, tuple[float, float]], order: list[str]) -> list[str]:
    beats_single = [k for k in order if stats[k][0] < 0]
    lines = [
        "* Better than the single-task baselines on average (Δm < 0): "
        + (", ".join(beats_single) or "none")
        + "."
    ]
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


def write_doc(
    path: Path, title: str, intro: list[str], result: SweepResult, tables: list[str]
) -> None:
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
            *reading(result),
            "",
        ]
    )
    write_text(path, text)
