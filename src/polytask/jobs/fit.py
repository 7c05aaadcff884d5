"""Train one model into a run folder, the one-model-per-task baselines, and the report.

The pieces every training entry point shares: :func:`~polytask.jobs.train.run_train` (one
config), :func:`~polytask.jobs.stages.run_stages` (one run per stage) and the evaluation job
(:func:`finish_report`, :func:`one_task`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from polytask import __version__
from polytask._core import PolytaskError, seed_everything, write_with
from polytask.build.baseline_budget import baseline_budget
from polytask.build.data import PreparedData, SplitData
from polytask.build.loaders import max_steps
from polytask.build.model import eval_model, make_model
from polytask.build.optim import make_scheduler
from polytask.build.standardize import original_units
from polytask.build.training import Init, make_training_parts
from polytask.config.load import config_hash
from polytask.config.schema import TrainConfig
from polytask.eval import (
    Floor,
    Predictions,
    Report,
    SelectionRule,
    baseline_intervals,
    build_report,
    load_report,
    predict_split,
    report_file,
    row_groups,
    split_metrics,
    split_support,
)
from polytask.models import MultiTaskModel
from polytask.tasks import TaskSet
from polytask.tasks.data import TensorData
from polytask.train import Trainer
from polytask.train.checkpoint import write_best
from polytask.train.distributed import world

from .baselines import baseline_record, single_run_config
from .output import output_folder
from .results import ReportExtra, RunSummary, Scores, Selection, TrainingRecord, TrainResult
from .run_folder import RunFolder, saved_predictions

SPLITS = ("val", "test")

__all__ = [
    "SPLITS",
    "Init",
    "check_resumable",
    "combine_single",
    "finish_report",
    "one_task",
    "resumable",
    "run_baseline",
    "save_trunk",
    "score_splits",
    "selection_rule",
    "single_task_config",
    "subset",
    "train_hash",
    "train_one",
    "train_single",
]


def resumable(folder: Path) -> bool:
    """Whether a stopped run in ``folder`` has a checkpoint to continue from (any sub-run)."""
    return any(folder.glob("**/checkpoints/latest"))


def train_hash(config: TrainConfig, single_task: bool) -> str:
    """The hash a run is resumed against (evaluation settings and device left out)."""
    return config_hash(config, ignore=("evaluation", "device")) + ("-single" if single_task else "")


def single_task_config(config: TrainConfig) -> TrainConfig:
    """``config`` for one-task baselines: balancing has nothing to balance and is left out."""
    return config.model_copy(update={"balancing": None})


def subset(data: SplitData, task: str) -> SplitData:
    """The rows of ``data`` for one task."""
    if isinstance(data, TensorData):
        return TensorData(data.inputs, {task: data.targets[task]}, data.name)
    return {task: data[task]}


def one_task(prepared: PreparedData, task: str) -> PreparedData:
    """``prepared`` restricted to ``task``."""
    t = prepared.taskset[task]
    splits = {k: subset(v, task) for k, v in prepared.splits.items()}
    return PreparedData(TaskSet([t]), splits, prepared.per_task, prepared.info)


def save_trunk(model: MultiTaskModel, path: Path) -> None:
    """Write the ``trunk.*`` tensors of ``model`` to ``path`` (rank 0 only)."""
    if world()[0] != 0:
        return
    state = {
        k: v.detach().contiguous().clone()
        for k, v in model.state_dict().items()
        if k.startswith("trunk.")
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", "polytask": "trunk"}
    write_with(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def selection_rule(config: TrainConfig, taskset: TaskSet) -> SelectionRule:
    rule = config.train.selection or f"mean:{taskset.tasks[0].metric_names[0]}"
    return SelectionRule.parse(rule, taskset)


def train_one(
    config: TrainConfig, prepared: PreparedData, folder: RunFolder, *, resume: bool,
    progress: bool, chash: str, init: Init | None = None,
) -> TrainResult:  # fmt: skip
    """Train one model on ``prepared`` into ``folder`` and score it on val and test."""
    parts = make_training_parts(config, prepared, on_device=True, init=init)
    model, taskset = parts.model, prepared.taskset
    t = config.train
    total = max_steps(t, parts.loader.steps_per_epoch)
    rule = selection_rule(config, taskset)
    trainer = Trainer(
        model, taskset, parts.loader, parts.optimizer, max_steps=total,
        scheduler=make_scheduler(t.scheduler, parts.optimizer, total), balancer=parts.balancer,
        val_data=prepared.splits.get("val"), selection=rule, eval_every=t.eval_every,
        patience=t.patience, grad_clip=t.grad_clip, out_dir=folder.path,
        checkpoint_every=t.checkpoint_every, config_hash=chash, progress=progress,
        eval_batch_size=config.evaluation.batch_size, gramian_log_every=t.gramian_log_every,
    )  # fmt: skip
    fit = trainer.fit(resume=resume and folder.has_checkpoint)
    scored = eval_model(config.multimodal, model, taskset)  # the mask ensemble when set
    bs = config.evaluation.batch_size
    metrics, predictions = score_splits(scored, prepared, bs, folder.report_file)
    selection = Selection(
        f"{rule.scope}:{rule.metric}", rule.describe(), fit.best_step, fit.best_score
    )
    if "val" not in prepared.splits:  # train/test only: the model of the last step is kept
        selection = Selection("last", "the last step (no validation split)", fit.steps, None)
        if world()[0] == 0:
            write_best(folder.checkpoints, model, {"step": fit.steps, "score": None})
    record = TrainingRecord(
        fit.steps, total, fit.stopped_early, fit.zero_update_steps, fit.vanishing_update_steps,
        round(fit.seconds, 2), str(parts.device),
    )  # fmt: skip
    return TrainResult(model, metrics, selection, record, predictions)


def score_splits(
    model: nn.Module, prepared: PreparedData, batch_size: int, report: Path
) -> tuple[Scores, dict[str, Predictions]]:
    """Metrics and predictions of ``model`` on val and test; the predictions are saved where
    the report written to ``report`` finds them (rank 0 only)."""
    taskset = prepared.taskset
    predictions = {
        k: original_units(
            prepared.info, predict_split(model, taskset, prepared.splits[k], batch_size, k)
        )
        for k in SPLITS
        if k in prepared.splits
    }
    if world()[0] == 0:
        for k, p in predictions.items():
            p.save(saved_predictions(report, k))
    return {k: split_metrics(taskset, p) for k, p in predictions.items()}, predictions


def combine_single(folder: RunFolder, prepared: PreparedData) -> dict[str, Predictions]:
    """The predictions of every task's sub-run of a single-task run, as one set per split
    (written at the run's top level, rank 0 only, so that the run can serve as a baseline)."""
    names = [t.name for t in prepared.taskset.tasks if not t.auxiliary]
    out = {}
    for split in (k for k in SPLITS if k in prepared.splits):
        parts = {n: Predictions.load(folder.single(n).predictions(split)) for n in names}
        out[split] = Predictions(
            {n: parts[n].preds[n] for n in names}, {n: parts[n].targets[n] for n in names},
            row_groups(names, prepared.splits[split]),
        )  # fmt: skip
        if world()[0] == 0:
            out[split].save(folder.predictions(split))
    return out


def run_baseline(
    given: str | Path | None, remembered: str | None, config: TrainConfig
) -> str | None:
    """The baseline of a run as an absolute path: the one given, else the one the run remembers
    (``run.json``), else the config's ``evaluation.baseline``."""
    chosen = given or remembered or config.evaluation.baseline
    if chosen is None:
        return None
    path = Path(chosen).expanduser().resolve()
    if not path.exists():
        how = "remembered by the run" if not given and chosen == remembered else "given"
        raise PolytaskError(
            f"baseline {chosen} ({how}): no such report or run folder; give --baseline"
        )
    return str(path)


@contextlib.contextmanager
def training_folder(
    out: str | Path, config_path: Path, chash: str, *, resume: bool, overwrite: bool
) -> Iterator[RunFolder]:
    """The run folder a training job writes, under the output policy (kept when it stops after a
    checkpoint) and checked against the config it started with when resumed."""
    writes = world()[0] == 0
    with output_folder(
        out, "train", resume=resume, overwrite=overwrite, writes=writes, keep=resumable
    ) as work:
        folder = RunFolder(work)
        check_resumable(folder, chash, config_path, resume)
        yield folder


def check_resumable(folder: RunFolder, chash: str, config_path: Path, resume: bool) -> None:
    """A resumed run must continue with the config it started with."""
    if resume and folder.run_file.is_file() and folder.record().config_hash != chash:
        raise PolytaskError(
            f"{folder.path}: cannot resume, the config differs from the one this run started "
            f"with ({config_path})"
        )


def train_single(
    config: TrainConfig, prepared: PreparedData, folder: RunFolder, resume: bool,
    progress: bool, chash: str,
) -> tuple[Scores, ReportExtra]:  # fmt: skip
    """One model per (non-auxiliary) task, all from the same initial trunk."""
    seed_everything(config.seed, config.train.deterministic)
    first = make_model(
        config.model, config.data, config.multimodal, prepared.taskset, prepared.in_dim
    )
    save_trunk(first, folder.base_trunk)
    budget = baseline_budget(config.train, prepared)  # the joint run's steps, for every task
    runs: dict[str, RunSummary] = {}
    metrics: Scores = {k: {} for k in SPLITS if k in prepared.splits}
    for task in (t for t in prepared.taskset.tasks if not t.auxiliary):
        sub = folder.single(task.name)
        done = train_one(
            single_run_config(config, prepared, task, budget), one_task(prepared, task.name),
            sub, resume=resume, progress=progress, chash=chash,
        )  # fmt: skip
        save_trunk(done.model, sub.trunk_file)
        runs[task.name] = done.summary()
        for split in metrics:
            metrics[split][task.name] = done.metrics[split][task.name]
    record = baseline_record(config, budget, prepared, metrics)
    return metrics, {"mode": "single-task", "runs": runs, "training": record}


def finish_report(
    config: TrainConfig, prepared: PreparedData, metrics: Scores, extra: ReportExtra,
    baseline: str | Path | None, start: float, chash: str,
    predictions: dict[str, Predictions] | None = None, report: Path | None = None,
) -> Report:  # fmt: skip
    """The report of ``metrics``, compared with the baseline report when one is given: the
    floor's support rule from each task's val and test support, the bootstrap intervals from
    ``predictions`` and the baseline's saved predictions (``evaluation.bootstrap`` draws).

    ``extra`` holds the report's other fields, ``mode`` among them; ``report`` is where the
    report will be written (its saved predictions are named relative to it)."""
    baseline = baseline or config.evaluation.baseline
    taskset, floor = prepared.taskset, Floor()
    support = {
        k: split_support(taskset, prepared.splits[k]) for k in SPLITS if k in prepared.splits
    }
    base = load_report(Path(baseline)) if baseline is not None else None
    intervals = None
    if baseline is not None and base is not None and predictions:
        draws = config.evaluation.bootstrap
        intervals = baseline_intervals(
            taskset, predictions, baseline, base, support, floor, draws
        )  # fmt: skip
    if predictions and report is not None:
        extra["predictions"] = {
            k: saved_predictions(report, k).relative_to(report.parent).as_posix()
            for k in predictions
        }
    return build_report(
        taskset, metrics, baseline=base.metrics if base is not None else None,
        baseline_source=str(report_file(baseline)) if baseline else None,
        polytask_version=__version__, data=prepared.info, config_hash=chash,
        seconds=round(time.perf_counter() - start, 2), support=support, floor=floor,
        intervals=intervals, **extra,
    )  # fmt: skip
