"""Tox21: multi-task vs single-task baselines, mean test ROC-AUC over the 12 tasks, 3 seeds.

Each seed re-draws the random 80/10/10 split and the initialisation. The multi-task model and the
single-task baselines (one model per task, same recipe: ``polytask train --single-task``) come
from ``examples/tox21.yaml``. Writes ``docs/results/tox21.md``.

    python benchmarks/tox21.py [--seeds 0 1 2] [--out .bench/tox21]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import yaml

from polytask._core import write_text
from polytask.config.load import config_hash, load_config
from polytask.config.schema import TrainConfig
from polytask.jobs.train import run_train

REPO = Path(__file__).resolve().parents[1]


def _cached(run: Path, config: Path, single: bool = False) -> dict | None:
    """A finished run's report, when ``--reuse`` is on and it was made from this very config."""
    if not REUSE or not (run / "report.json").is_file():
        return None
    report = json.loads((run / "report.json").read_text())
    expected = config_hash(load_config(TrainConfig, config), ignore=("evaluation",)) + (
        "-single" if single else ""
    )
    if report.get("config_hash") != expected or (not single and "comparison" not in report):
        return None
    return report


REUSE = False


def main() -> None:
    global REUSE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "tox21")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--reuse", action="store_true", help="reuse finished runs under --out (same config)"
    )
    args = parser.parse_args()
    REUSE = args.reuse
    torch.set_num_threads(args.threads)
    base = yaml.safe_load((REPO / "examples" / "tox21.yaml").read_text())
    rows = []
    per_task: dict[str, list[tuple[float, float]]] = {}
    for seed in args.seeds:
        cfg = dict(base, seed=seed)
        cfg["data"] = dict(base["data"], split=dict(base["data"]["split"], seed=seed))
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"tox21_seed{seed}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        single = _cached(args.out / f"single{seed}", path, single=True) or run_train(
            path, args.out / f"single{seed}", single_task=True, overwrite=True, progress=False
        )
        multi = _cached(args.out / f"multi{seed}", path) or run_train(
            path,
            args.out / f"multi{seed}",
            overwrite=True,
            progress=False,
            baseline=args.out / f"single{seed}" / "report.json",
        )
        comp = multi["comparison"]["test"]
        rows.append(
            (
                seed,
                multi["means"]["test"]["roc_auc"],
                single["means"]["test"]["roc_auc"],
                comp["delta_m"],
                comp["delta_p"],
                multi["training"]["seconds"],
            )
        )
        for task, m in multi["metrics"]["test"].items():
            per_task.setdefault(task, []).append(
                (m["roc_auc"], single["metrics"]["test"][task]["roc_auc"])
            )
        print(
            f"seed {seed}: multi-task {rows[-1][1]:.4f}  single-task {rows[-1][2]:.4f}  Δm {comp['delta_m']:+.2f}%  Δp {comp['delta_p']:+.2f}%",
            flush=True,
        )

    def ms(values: list[float]) -> str:
        return (
            f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
            if len(values) > 1
            else f"{values[0]:.4f}"
        )

    lines = [
        "# Tox21: multi-task vs single-task (mean test ROC-AUC over 12 tasks)",
        "",
        f"Command: `python benchmarks/tox21.py --seeds {' '.join(map(str, args.seeds))}` (config: `examples/tox21.yaml`:",
        f"ECFP radius {base['data']['featurizer']['radius']}, {base['data']['featurizer']['bits']} bits; trunk {base['model']['trunk']};",
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
    text = "\n".join(lines)
    print(text)
    write_text(REPO / "docs" / "results" / "tox21.md", text)


if __name__ == "__main__":
    sys.exit(main())
