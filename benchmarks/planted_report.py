"""Summary of the planted multi-task tables, and how long polytask takes to load many tasks.

Two sections of ``docs/results/planted_tasks.md``:

* ``planted_stats``: for K = 100, 600, 2000 (seed 0, every molecule of the pool), the table's
  size, missing fraction, labels and positives per task, the planted optimum (mean test ROC-AUC
  of the true logits) and the generation time.
* ``many_tasks_load``: ``prepare_data`` (read, featurise, split) of an 8,000 x 617 planted table
  declared with ``data.label_columns: {select: all}``, with a cold and a warm ECFP cache, against
  the same table declared as a 617-entry ``tasks`` list (one ``label_array`` call per column).

    python benchmarks/planted_report.py [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from polytask.build.data import prepare_data
from polytask.config.load import validate
from polytask.config.schema import TrainConfig
from polytask.tasks.data import read_table

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
from benchmarks._sections import write_section  # noqa: E402

from planted_tasks import CACHE, PlantSpec, plant, save  # noqa: E402

RESULTS = REPO / "docs" / "results" / "planted_tasks.md"
TITLE = "Planted sparse multi-task data on real molecules"


def stats_section(ks: tuple[int, ...]) -> str:
    rows = []
    for k in ks:
        start = time.perf_counter()
        spec = PlantSpec(tasks=k, seed=0)
        planted = plant(spec)
        path = save(planted, spec, str(CACHE / f"k{k}.csv.gz"))
        took = time.perf_counter() - start
        mb = path.stat().st_size / 1e6
        s = planted.summary
        lab, pos = s["labelled_per_task"], s["positives_per_task"]
        opt = s["planted_optimum"]
        rows.append(
            f"| {k} | {s['molecules']:,} | {s['missing_fraction']:.3f} | "
            f"{lab['min']} / {lab['median']:g} / {lab['max']} | "
            f"{pos['min']} / {pos['median']:g} / {pos['max']} | "
            f"{opt['mean_test_roc_auc']:.4f} ({opt['tasks_with_test_auc']} tasks) | {mb:.1f} | "
            f"{took:.1f} |"
        )
    return "\n".join(
        [
            "Made by `python benchmarks/planted_report.py` (each table: `python "
            "benchmarks/planted_tasks.py --tasks K --seed 0 --out .bench/planted/kK.csv.gz`); "
            "seconds with the molecule/ECFP cache of `.bench/planted/` warm (the first run "
            "canonicalises and featurises the pool once, about 17 s).",
            "",
            "| K | molecules | missing | labels per task min / median / max | positives per "
            "task min / median / max | planted optimum: mean test ROC-AUC | csv.gz MB | seconds |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


def _config(path: Path, names: list[str] | None) -> TrainConfig:
    data: dict[str, Any] = {"source": "table", "path": str(path), "input": "smiles"}
    if names is None:
        data["label_columns"] = {"select": "all", "kind": "binary"}
    cfg: dict[str, Any] = {"data": data, "train": {"steps": 1}}
    if names is not None:
        cfg["tasks"] = [{"name": n} for n in names]
    return validate(TrainConfig, cfg, "many_tasks_load")


def _time(cfg: TrainConfig, base: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds of one ``prepare_data``, and the number of tasks."""
    wall, cpu = time.perf_counter(), time.process_time()
    prepared = prepare_data(cfg, base)
    return time.perf_counter() - wall, time.process_time() - cpu, len(prepared.taskset.tasks)


def load_section(n: int = 8000, k: int = 617, repeats: int = 5) -> str:
    spec = PlantSpec(tasks=k, seed=0, molecules=n)
    planted = plant(spec)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["POLYTASK_CACHE"] = str(Path(tmp) / "cache")  # a cold ECFP cache first
        path = save(planted, spec, str(Path(tmp) / "table.csv"))
        ways = {
            "`label_columns: {select: all}`": _config(path, None),
            f"`tasks:` list of {k} entries": _config(path, planted.names),
        }
        cold = _time(ways["`label_columns: {select: all}`"], path.parent)
        runs: dict[str, list[tuple[float, float, int]]] = {w: [] for w in ways}
        for _ in range(repeats):  # interleaved, so load from other processes hits both alike
            for way, cfg in ways.items():
                runs[way].append(_time(cfg, path.parent))
        reads = []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            read_table(path)
            reads.append((time.perf_counter() - wall, time.process_time() - cpu))
        size = path.stat().st_size / 1e6
    rows = [
        f"| `label_columns: {{select: all}}` | cold | {cold[2]} | {cold[0]:.2f} | {cold[1]:.2f} |"
    ]
    for way, got in runs.items():
        wall, cpu = min(r[0] for r in got), min(r[1] for r in got)
        rows.append(f"| {way} | warm | {got[0][2]} | {wall:.2f} | {cpu:.2f} |")
    rows.append(
        f"| (part of it: reading the CSV with pandas) | | | {min(r[0] for r in reads):.2f} | "
        f"{min(r[1] for r in reads):.2f} |"
    )
    return "\n".join(
        [
            f"`prepare_data` (read the CSV, make the tasks, featurise, split, check) of a planted "
            f"table of {n:,} molecules x {k} binary tasks ({size:.1f} MB CSV, "
            f"{planted.summary['missing_fraction']:.0%} missing), {torch.get_num_threads()} "
            f"threads. Cold: the first call, featurising {n:,} SMILES; warm: ECFP from the cache, "
            f"best of {repeats} interleaved calls (the machine is shared, so the minimum is the "
            f"reading least disturbed by other processes; 1-minute load average {load:.1f} on "
            f"{os.cpu_count()} cores at the start). `python benchmarks/planted_report.py`.",
            "",
            "| declaration | ECFP cache | tasks | wall s | CPU s |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-stats", action="store_true", help="only the loading section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    write_section(RESULTS, "many_tasks_load", load_section(), TITLE)
    if not args.skip_stats:
        write_section(RESULTS, "planted_stats", stats_section((100, 600, 2000)), TITLE)
    print(RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
