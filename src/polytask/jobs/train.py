"""The training job: config → data → model → Trainer → report.

:func:`run_train` trains one multi-task model (or, with ``single_task=True``, one model per task
with the same recipe — the baselines; the ``balancing`` section, meaningless for one task, is
left out and the report says so) and writes the run folder (:class:`RunFolder`) through the
output policy of :mod:`polytask.jobs.output`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from polytask import __version__
from polytask._core import (
    PolytaskError,
    resolve_device,
    seed_everything,
    write_with,
)
from polytask.build.balancing import make_balancer
from polytask.build.data import PreparedData, SplitData, prepare_data
from polytask.build.loaders import make_loader, max_steps
from polytask.build.model import eval_model, make_model
from polytask.build.optim import make_optimizer, make_scheduler
from polytask.config.load import config_hash, load_config
from polytask.config.schema import TrainConfig
from polytask.eval import Report, SelectionRule, build_report, evaluate, load_report, write_report
from polytask.models import MultiTaskModel
from polytask.tasks import TaskSet
from polytask.tasks.data import TensorData
from polytask.train import Trainer
from polytask.train.distributed import barrier, init_from_env, world

from .output import output_folder
from .results import Scores, Selection, TrainingRecord, TrainResult
from .run_folder import RunFolder, RunRecord

Init = Callable[[MultiTaskModel], None]


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
    seed_everything(config.seed, config.train.deterministic)
    taskset = prepared.taskset
    model = make_model(config, taskset, prepared.in_dim)
    if init is not None:  # e.g. weights carried over from an earlier stage
        init(model)
    device = resolve_device(config.device)
    model.to(device)
    balancer = make_balancer(config.balancing, len(taskset))
    params = list(model.parameters())
    if balancer is not None:
        balancer.to(device)
        params += list(balancer.parameters())
    optimizer = make_optimizer(config, params)
    loader = make_loader(config, prepared, taskset)
    total = max_steps(config, loader.steps_per_epoch)
    rule = selection_rule(config, taskset)
    t = config.train
    trainer = Trainer(
        model, taskset, loader, optimizer,
        max_steps=total, scheduler=make_scheduler(config, optimizer, total), balancer=balancer,
        val_data=prepared.splits["val"], selection=rule, eval_every=t.eval_every,
        patience=t.patience, grad_clip=t.grad_clip, out_dir=folder.path,
        checkpoint_every=t.checkpoint_every, config_hash=chash, progress=progress,
        eval_batch_size=config.evaluation.batch_size, gramian_log_every=t.gramian_log_every,
    )  # fmt: skip
    fit = trainer.fit(resume=resume and folder.has_checkpoint)
    scored = eval_model(config, model, taskset)  # the mask ensemble when multimodal.ensemble is set
    splits = {k: prepared.splits[k] for k in ("val", "test")}
    metrics = evaluate(scored, taskset, splits, config.evaluation.batch_size)
    selection = Selection(
        f"{rule.scope}:{rule.metric}", rule.describe(), fit.best_step, fit.best_score
    )
    record = TrainingRecord(
        fit.steps, total, fit.stopped_early, fit.zero_update_steps, fit.vanishing_update_steps,
        round(fit.seconds, 2), str(device),
    )  # fmt: skip
    return TrainResult(model, metrics, selection, record)


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
        from .stages import run_stages

        return run_stages(
            config, config_path, out, single_task=single_task, resume=resume,
            overwrite=overwrite, progress=progress, baseline=baseline,
        )  # fmt: skip
    dropped = config.balancing is not None and single_task
    if single_task:
        config = single_task_config(config)
    chash = train_hash(config, single_task)
    writes = world()[0] == 0
    with output_folder(
        out, "train", resume=resume, overwrite=overwrite, writes=writes, keep=resumable
    ) as work:
        folder = RunFolder(work)
        check_resumable(folder, chash, config_path, resume)
        barrier()
        base = config_path.resolve().parent
        prepared = prepare_data(config, base)
        record = RunRecord(
            config=config.model_dump(mode="json"), config_dir=str(base), config_hash=chash,
            single_task=single_task,
        )  # fmt: skip
        if writes:
            folder.write_record(record)
        start = time.perf_counter()
        if single_task:
            metrics, extra = train_single(config, prepared, folder, resume, progress, chash)
            if dropped:
                extra["balancing_dropped"] = "single-task runs train one task: no balancing"
        else:
            done = train_one(
                config, prepared, folder, resume=resume, progress=progress, chash=chash
            )
            metrics, extra = done.metrics, {"mode": "multi-task", **done.summary()}
        report = finish_report(config, prepared, metrics, extra, baseline, start, chash)
        if writes:
            write_report(folder.report_file, report)
    return report


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
) -> tuple[Scores, dict[str, Any]]:  # fmt: skip
    """One model per (non-auxiliary) task, all from the same initial trunk."""
    seed_everything(config.seed, config.train.deterministic)
    save_trunk(make_model(config, prepared.taskset, prepared.in_dim), folder.base_trunk)
    runs: dict[str, dict[str, Any]] = {}
    metrics: Scores = {"val": {}, "test": {}}
    for task in (t for t in prepared.taskset.tasks if not t.auxiliary):
        sub = folder.single(task.name)
        done = train_one(
            config, one_task(prepared, task.name), sub, resume=resume, progress=progress,
            chash=chash,
        )  # fmt: skip
        save_trunk(done.model, sub.trunk_file)
        runs[task.name] = done.summary()
        for split in metrics:
            metrics[split][task.name] = done.metrics[split][task.name]
    return metrics, {"mode": "single-task", "runs": runs}


def finish_report(
    config: TrainConfig, prepared: PreparedData, metrics: Scores, extra: dict[str, Any],
    baseline: str | Path | None, start: float, chash: str,
) -> Report:  # fmt: skip
    """The report of ``metrics``, compared with the baseline report when one is given."""
    baseline = baseline or config.evaluation.baseline
    base_metrics = load_report(Path(baseline)).metrics if baseline is not None else None
    return build_report(
        prepared.taskset, metrics, baseline=base_metrics,
        baseline_source=str(baseline) if baseline else None, polytask_version=__version__,
        data=prepared.info, config_hash=chash, seconds=round(time.perf_counter() - start, 2),
        **extra,
    )  # fmt: skip
