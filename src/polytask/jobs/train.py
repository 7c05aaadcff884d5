"""The training job: config → data → model → Trainer → report.

:func:`run_train` trains one multi-task model (or, with ``single_task=True``, one model per task
with the same recipe — the baselines; the ``balancing`` section, meaningless for one task, is
left out and the report says so) and writes the run folder (:class:`RunFolder`) through the
output policy of :mod:`polytask.jobs.output`. A config with ``stages`` runs each stage in turn
(:mod:`polytask.jobs.stages`); one model is trained by :func:`polytask.jobs.fit.train_one`.
"""

from __future__ import annotations

import time
from pathlib import Path

from polytask.build.data import PreparedData, prepare_data
from polytask.config.load import load_config
from polytask.config.schema import TrainConfig
from polytask.eval import Report, write_report
from polytask.train.distributed import barrier, init_from_env, world

from .fit import (
    combine_single,
    finish_report,
    run_baseline,
    single_task_config,
    train_hash,
    train_one,
    train_single,
    training_folder,
)
from .folds import fold_configs, run_folds
from .results import ReportExtra, Scores
from .run_folder import RunFolder, RunRecord
from .stages import run_stages

__all__ = ["run_train", "single_task_config"]


def run_train(
    config_path: str | Path, out: str | Path, *, single_task: bool = False,
    resume: bool = False, overwrite: bool = False, progress: bool = True,
    baseline: str | Path | None = None,
) -> Report:  # fmt: skip
    """Train as the config at ``config_path`` says; write the run folder ``out``; the report."""
    config_path = Path(config_path)
    config = load_config(TrainConfig, config_path)
    init_from_env()
    if config.stages is not None:
        return run_stages(
            config, config_path, out, single_task=single_task, resume=resume,
            overwrite=overwrite, progress=progress, baseline=baseline,
        )  # fmt: skip
    if fold_configs(config) is not None:  # k-fold / repeated splits: one run per fold
        return run_folds(
            config, config_path, out, single_task=single_task, resume=resume,
            overwrite=overwrite, progress=progress, baseline=baseline,
        )  # fmt: skip
    dropped = config.balancing is not None and single_task
    if single_task:
        config = single_task_config(config)
    chash = train_hash(config, single_task)
    writes = world()[0] == 0
    with training_folder(out, config_path, chash, resume=resume, overwrite=overwrite) as folder:
        barrier()
        base = config_path.resolve().parent
        prepared = prepare_data(config, base)
        kept = folder.remembered_baseline() if resume else None
        baseline = run_baseline(baseline, kept, config)
        record = RunRecord(
            config=config.model_dump(mode="json"), config_dir=str(base), config_hash=chash,
            single_task=single_task, baseline=baseline,
        )  # fmt: skip
        if writes:
            folder.write_record(record)
        report = _fit(config, prepared, folder, record, resume, progress, dropped)
        if writes:
            write_report(folder.report_file, report)
    return report


def _fit(
    config: TrainConfig, prepared: PreparedData, folder: RunFolder, record: RunRecord,
    resume: bool, progress: bool, dropped: bool,
) -> Report:  # fmt: skip
    """Train the run's model (or one per task) and build its report."""
    start, chash, writes = time.perf_counter(), record.config_hash, world()[0] == 0
    metrics: Scores
    extra: ReportExtra
    if record.single_task:
        metrics, extra = train_single(config, prepared, folder, resume, progress, chash)
        predictions = combine_single(folder, prepared) if writes else None
        if dropped:
            extra["balancing_dropped"] = "single-task runs train one task: no balancing"
    else:
        done = train_one(config, prepared, folder, resume=resume, progress=progress, chash=chash)
        metrics, extra = done.metrics, {"mode": "multi-task", **done.summary()}
        predictions = done.predictions
    return finish_report(
        config, prepared, metrics, extra, record.baseline, start, chash, predictions,
        folder.report_file,
    )  # fmt: skip
