"""k-fold cross-validation and repeated random splits: one run per fold, one aggregated report.

A config whose ``data.split`` is ``{kind: kfold}`` or ``{kind: repeated}`` (without ``fold`` /
``repeat``) trains one run per fold or repeat into ``<run>/folds/<name>/`` (each a complete run
folder: its config has ``fold`` / ``repeat`` set, so ``polytask eval`` works on it), then writes
``<run>/report.json`` with each metric's mean over the runs (the comparison with a baseline, if
given, is of these means) and ``<run>/folds.json``: per split, task and metric the value of every
run, their mean, sample std (ddof = 1) and the 95% Student-t interval of the mean
``mean ± t(0.975, n−1)·std/√n``.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

from polytask._core import write_text
from polytask.build.data import prepare_data
from polytask.config.schema import PerTaskData, TableData, Tox21Data, TrainConfig
from polytask.config.splits import KFoldSplit, RepeatedSplit
from polytask.eval import Report, load_report, write_report
from polytask.eval.summary import mean_std
from polytask.train.distributed import barrier, world

from .fit import (
    finish_report,
    single_task_config,
    train_hash,
    train_one,
    train_single,
    training_folder,
)
from .results import ReportExtra, RunSummary, Scores
from .run_folder import RunFolder, RunRecord

__all__ = ["FOLDS_FILE", "aggregate", "fold_configs", "run_folds"]

FOLDS_FILE = "folds.json"
#: t(0.975, df) for df = 1..30; above, the normal quantile
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def fold_configs(config: TrainConfig) -> list[tuple[str, TrainConfig]] | None:
    """One config per fold or repeat (``fold-0``, ``repeat-0``, ...), or None for one run."""
    data = config.data
    if not isinstance(data, TableData | PerTaskData | Tox21Data):
        return None
    split = data.split
    picks: list[tuple[str, KFoldSplit | RepeatedSplit]]
    if isinstance(split, KFoldSplit) and split.fold is None:
        picks = [(f"fold-{i}", split.model_copy(update={"fold": i})) for i in range(split.folds)]
    elif isinstance(split, RepeatedSplit) and split.repeat is None:
        picks = [
            (f"repeat-{r}", split.model_copy(update={"repeat": r})) for r in range(split.repeats)
        ]
    else:
        return None
    return [
        (name, config.model_copy(update={"data": data.model_copy(update={"split": one})}))
        for name, one in picks
    ]


def interval(values: list[float]) -> dict[str, object]:
    """Mean, sample std and 95% t-interval of the finite ``values`` (NaN ones are counted apart)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"values": values, "n": 0, "mean": None, "std": None, "ci95": None}
    mean, std = mean_std(finite)
    n = len(finite)
    half = _T975[min(n - 1, len(_T975)) - 1] * std / math.sqrt(n) if n > 1 else math.nan
    ci = [mean - half, mean + half] if n > 1 else None
    return {"values": values, "n": n, "mean": mean, "std": None if n < 2 else std, "ci95": ci}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(statistics.mean(finite)) if finite else math.nan


def aggregate(runs: dict[str, Scores]) -> tuple[Scores, dict[str, object]]:
    """Mean metrics over runs (``{split: {task: {metric: mean}}}``) and every value's interval."""
    first = next(iter(runs.values()))
    means: Scores = {}
    table: dict[str, object] = {}
    for split, per in first.items():
        means[split] = {}
        entries: dict[str, dict[str, object]] = {}
        for task, metrics in per.items():
            values = {m: [runs[r][split][task][m] for r in runs] for m in metrics}
            entries[task] = {m: interval(v) for m, v in values.items()}
            means[split][task] = {m: _mean(v) for m, v in values.items()}
        table[split] = entries
    return means, table


def _one_run(
    config: TrainConfig, folder: RunFolder, base: Path, single_task: bool, resume: bool,
    progress: bool,
) -> tuple[Report, Scores]:  # fmt: skip
    """Train (or, when its report is there, load) one fold's run."""
    if resume and folder.finished:
        report = load_report(folder.report_file)
        return report, report.metrics
    chash = train_hash(config, single_task)
    prepared = prepare_data(config, base)
    record = RunRecord(
        config=config.model_dump(mode="json"), config_dir=str(base), config_hash=chash,
        single_task=single_task,
    )  # fmt: skip
    if world()[0] == 0:
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_record(record)
    start = time.perf_counter()
    extra: ReportExtra
    if single_task:
        metrics, extra = train_single(config, prepared, folder, resume, progress, chash)
    else:
        done = train_one(config, prepared, folder, resume=resume, progress=progress, chash=chash)
        metrics, extra = done.metrics, {"mode": "multi-task", **done.summary()}
    report = finish_report(config, prepared, metrics, extra, None, start, chash)
    if world()[0] == 0:
        write_report(folder.report_file, report)
    return report, metrics


def run_folds(
    config: TrainConfig, config_path: Path, out: str | Path, *, single_task: bool = False,
    resume: bool = False, overwrite: bool = False, progress: bool = True,
    baseline: str | Path | None = None,
) -> Report:  # fmt: skip
    """Train every fold or repeat of ``config`` into ``out``; the aggregated report."""
    if single_task:
        config = single_task_config(config)
    runs = fold_configs(config)
    assert runs is not None
    chash = train_hash(config, single_task)
    base = config_path.resolve().parent
    writes = world()[0] == 0
    with training_folder(out, config_path, chash, resume=resume, overwrite=overwrite) as folder:
        barrier()
        record = RunRecord(
            config=config.model_dump(mode="json"), config_dir=str(base), config_hash=chash,
            single_task=single_task,
        )  # fmt: skip
        if writes:
            folder.write_record(record)
        start = time.perf_counter()
        scores: dict[str, Scores] = {}
        summaries: dict[str, RunSummary] = {}
        for name, sub in runs:
            report, scores[name] = _one_run(
                sub, RunFolder(folder.path / "folds" / name), base, single_task, resume, progress
            )
            summaries[name] = {
                "selection": report.selection or {},
                "training": report.training or {},
            }
        means, table = aggregate(scores)
        prepared = prepare_data(runs[-1][1], base)  # tasks and support (the last run's rows)
        mode = "cross-validation" if runs[0][0].startswith("fold") else "repeated"
        extra: ReportExtra = {"mode": f"{mode} ({len(runs)} runs, mean metrics)", "runs": summaries}
        report = finish_report(config, prepared, means, extra, baseline, start, chash)
        if writes:
            write_text(folder.path / FOLDS_FILE, json.dumps(table, indent=2) + "\n")
            write_report(folder.report_file, report)
    return report
