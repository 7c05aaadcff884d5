"""Training and evaluation jobs: config → data → model → Trainer → report.

``run_train`` trains one multi-task model (or, with ``single_task=True``, one model per task
with the same recipe — the baselines) and writes ``<out>/report.json``, ``<out>/checkpoints/``
and ``<out>/logs/``. ``run_eval`` re-evaluates a finished run folder.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from polytask import __version__
from polytask._core import PolytaskError, resolve_device, seed_everything, write_text, write_with
from polytask.eval import SelectionRule, build_report, evaluate, load_report, write_report
from polytask.tasks import TaskSet
from polytask.tasks.data import TensorData
from polytask.train import Trainer, load_weights
from polytask.train.distributed import barrier, init_from_env, world

from .build import make_balancer, make_loader, make_model, make_optimizer, make_scheduler, max_steps
from .data import PreparedData, SplitData, prepare_data
from .load import config_hash, load_config, validate
from .modal import eval_model
from .schema import TrainConfig

RUN_FILE = "run.json"
#: trunk-only weights (keys ``trunk.*``) of single-task runs: ``base/`` holds the shared
#: initialisation every task starts from, ``single/<task>/`` each task's selected trunk, so the
#: task trunks can be merged (``polytask merge``) and evaluated (``polytask eval --trunk``).
TRUNK_FILE = "trunk.safetensors"


def _initial_model(config: TrainConfig, prepared: PreparedData) -> Any:
    """The model every single-task run starts from (same seed, so the same trunk init)."""
    seed_everything(config.seed, config.train.deterministic)
    return make_model(config, prepared.taskset, prepared.in_dim)


def _save_trunk(model: Any, path: Path) -> None:
    if world()[0] != 0:
        return
    state = {
        k: v.detach().contiguous().clone()
        for k, v in model.state_dict().items()
        if k.startswith("trunk.")
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(
        path, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt", "polytask": "trunk"})
    )


def _prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (out / RUN_FILE).is_file():
            raise PolytaskError(
                f"{out}: nothing to resume (no {RUN_FILE}); drop --resume to start a new run"
            )
        return
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise PolytaskError(
                f"output folder {out} already exists and is not empty; use --resume to continue it or --overwrite to replace it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _select_rule(config: TrainConfig, taskset: TaskSet) -> SelectionRule:
    rule = config.train.selection or f"mean:{taskset.tasks[0].metric_names[0]}"
    return SelectionRule.parse(rule, taskset)


def _subset(data: SplitData, task: str) -> SplitData:
    if isinstance(data, TensorData):
        return TensorData(data.inputs, {task: data.targets[task]}, data.name)
    return {task: data[task]}


def _train_one(
    config: TrainConfig, prepared: PreparedData, out: Path, resume: bool, progress: bool, chash: str,
    init: Callable[[Any], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    seed_everything(config.seed, config.train.deterministic)
    taskset = prepared.taskset
    model = make_model(config, taskset, prepared.in_dim)
    if init is not None:  # e.g. weights carried over from an earlier stage
        init(model)
    device = resolve_device(config.device)
    model.to(device)
    balancer = make_balancer(config, len(taskset))
    if balancer is not None:
        balancer.to(device)
    params = list(model.parameters()) + (
        list(balancer.parameters()) if balancer is not None else []
    )
    optimizer = make_optimizer(config, params)
    loader = make_loader(config, prepared, taskset)
    total = max_steps(config, loader.steps_per_epoch)
    rule = _select_rule(config, taskset)
    trainer = Trainer(
        model, taskset, loader, optimizer,
        max_steps=total, scheduler=make_scheduler(config, optimizer, total), balancer=balancer,
        val_data=prepared.splits["val"], selection=rule, eval_every=config.train.eval_every,
        patience=config.train.patience, grad_clip=config.train.grad_clip, out_dir=out,
        checkpoint_every=config.train.checkpoint_every, config_hash=chash, progress=progress,
        eval_batch_size=config.evaluation.batch_size, gramian_log_every=config.train.gramian_log_every,
    )  # fmt: skip
    result = trainer.fit(resume=resume)
    metrics = evaluate(
        eval_model(config, model, taskset),  # the mask ensemble when multimodal.ensemble is set
        taskset,
        {k: prepared.splits[k] for k in ("val", "test")},
        config.evaluation.batch_size,
    )
    return {
        "model": model,
        "metrics": metrics,
        "selection": {
            "rule": f"{rule.scope}:{rule.metric}",
            "description": rule.describe(),
            "best_step": result.best_step,
            "best_score": result.best_score,
        },
        "training": {
            "steps": result.steps,
            "max_steps": total,
            "stopped_early": result.stopped_early,
            "zero_update_steps": result.zero_update_steps,
            "vanishing_update_steps": result.vanishing_update_steps,
            "seconds": round(result.seconds, 2),
            "device": str(device),
        },
    }


def run_train(
    config_path: str | Path,
    out: str | Path,
    *,
    single_task: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    baseline: str | Path | None = None,
) -> dict[str, Any]:
    """Train as the config says; write and return the report."""
    config_path = Path(config_path)
    config = load_config(TrainConfig, config_path)
    init_from_env()
    if config.stages is not None:
        from .stages_run import run_stages

        return run_stages(
            config, config_path, out, single_task=single_task, resume=resume,
            overwrite=overwrite, progress=progress, baseline=baseline,
        )  # fmt: skip
    writes = world()[0] == 0
    if config.balancing is not None:  # checked before any data is read
        from polytask.config.balancing import BalancingConfig

        validate(BalancingConfig, dict(config.balancing), f"{config_path}: balancing")
    out = Path(out)
    chash = config_hash(config, ignore=("evaluation", "device")) + (
        "-single" if single_task else ""
    )
    if resume and (out / RUN_FILE).is_file():
        previous = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
        if previous.get("config_hash") != chash:
            raise PolytaskError(
                f"{out}: cannot resume, the config differs from the one this run started with ({config_path})"
            )
    if writes:
        _prepare_out(out, resume, overwrite)
    barrier()
    base = config_path.resolve().parent
    prepared = prepare_data(config, base)
    run = {
        "config": config.model_dump(mode="json"),
        "config_dir": str(base),
        "config_hash": chash,
        "single_task": single_task,
    }
    if writes:
        write_text(out / RUN_FILE, json.dumps(run, indent=2) + "\n")
    start = time.perf_counter()
    if single_task:
        _save_trunk(_initial_model(config, prepared), out / "base" / TRUNK_FILE)
        per_task: dict[str, dict[str, Any]] = {}
        metrics: dict[str, dict[str, dict[str, float]]] = {"val": {}, "test": {}}
        for task in (t for t in prepared.taskset.tasks if not t.auxiliary):
            one = PreparedData(
                TaskSet([task]),
                {k: _subset(v, task.name) for k, v in prepared.splits.items()},
                prepared.per_task,
                prepared.info,
            )
            sub = out / "single" / task.name
            done = _train_one(
                config,
                one,
                sub,
                resume and (sub / "checkpoints" / "latest").is_file(),
                progress,
                chash,
            )
            _save_trunk(done["model"], sub / TRUNK_FILE)
            per_task[task.name] = {k: done[k] for k in ("selection", "training")}
            for split in metrics:
                metrics[split][task.name] = done["metrics"][split][task.name]
        extra: dict[str, Any] = {"mode": "single-task", "runs": per_task}
    else:
        done = _train_one(config, prepared, out, resume, progress, chash)
        metrics = done["metrics"]
        extra = {"mode": "multi-task", "selection": done["selection"], "training": done["training"]}
    return _finish(config, prepared, metrics, extra, out / "report.json", baseline, start, chash)


def _finish(
    config: TrainConfig,
    prepared: PreparedData,
    metrics: Any,
    extra: dict[str, Any],
    report_path: Path,
    baseline: str | Path | None,
    start: float,
    chash: str,
) -> dict[str, Any]:
    baseline = baseline or config.evaluation.baseline
    base_metrics = None
    if baseline is not None:
        base_path = Path(baseline)
        base_metrics = load_report(base_path)["metrics"]
    report = build_report(
        prepared.taskset, metrics, baseline=base_metrics, baseline_source=str(baseline) if baseline else None,
        polytask_version=__version__, data=prepared.info, config_hash=chash,
        seconds=round(time.perf_counter() - start, 2), **extra,
    )  # fmt: skip
    if world()[0] == 0:
        write_report(report_path, report)
    return report


def _find_run(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    for root in (run_dir, run_dir.parent.parent):  # a run folder, or a checkpoints/<name> in it
        if (root / RUN_FILE).is_file():
            return root, json.loads((root / RUN_FILE).read_text(encoding="utf-8"))
    raise PolytaskError(f"{run_dir}: not a polytask run folder (no {RUN_FILE})")


def _read_trunk(path: str | Path) -> dict[str, Any]:
    """The ``trunk.*`` tensors of a checkpoint (file, sharded index or folder), e.g. a merge."""
    from polytask.merging.io import open_checkpoint

    reader = open_checkpoint(path)
    state = {k: reader.get(k) for k in reader if k.startswith("trunk.")}
    if not state:
        raise PolytaskError(f"{path}: no 'trunk.*' tensors to evaluate")
    return state


def _load_model(
    config: TrainConfig, prepared: PreparedData, weights: Path, trunk: dict[str, Any] | None
) -> Any:
    if not weights.is_file():
        raise PolytaskError(f"no weights found at {weights}")
    seed_everything(config.seed, config.train.deterministic)
    model = make_model(config, prepared.taskset, prepared.in_dim)
    load_weights(model, weights)
    if trunk is not None:
        own = {k: v for k, v in model.state_dict().items() if k.startswith("trunk.")}
        if set(own) != set(trunk):
            raise PolytaskError(
                f"--trunk: tensor names differ from the model's trunk (e.g. {sorted(set(own) ^ set(trunk))[:2]})"
            )
        for k, v in own.items():
            if tuple(trunk[k].shape) != tuple(v.shape):
                raise PolytaskError(
                    f"--trunk: tensor {k!r} has shape {tuple(trunk[k].shape)}, the model needs {tuple(v.shape)}"
                )
        model.load_state_dict({k: t.to(own[k].dtype) for k, t in trunk.items()}, strict=False)
    return model.to(resolve_device(config.device))


def _renormalised(
    config: TrainConfig, prepared: PreparedData, shared: dict[str, Any], batch_size: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trunk ``shared`` with its batch-norm statistics re-estimated on the training inputs
    (every row once, shared by all tasks), and a record of the pass."""
    from polytask.models.norm_stats import recompute_norm_stats
    from polytask.tasks.data.tensors import index_inputs, num_rows

    seed_everything(config.seed, config.train.deterministic)
    model = make_model(config, prepared.taskset, prepared.in_dim)
    model.load_state_dict(shared, strict=False)
    train = prepared.splits["train"]
    parts = (
        [train]
        if isinstance(train, TensorData)
        else list({id(v): v for v in train.values()}.values())
    )
    rows = [torch.arange(num_rows(p.inputs)).split(batch_size) for p in parts]
    batches = (index_inputs(p.inputs, idx) for p, r in zip(parts, rows) for idx in r)
    used = recompute_norm_stats(model.trunk, batches, model.forward_features)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if k in shared}
    return state, {
        "split": "train",
        "batches": used,
        "rows": sum(num_rows(p.inputs) for p in parts),
    }


def run_eval(
    run_dir: str | Path,
    *,
    baseline: str | Path | None = None,
    out_file: str | Path | None = None,
    trunk: str | Path | None = None,
    norm_stats: bool = False,
) -> dict[str, Any]:
    """Evaluate the selected weights of a run folder on val and test.

    With ``trunk`` (e.g. the output of ``polytask merge`` over the ``trunk.safetensors`` of a
    single-task run), every task is evaluated with that shared trunk and its own head — the
    merged multi-task model — in the same report format as joint training. ``norm_stats``
    re-estimates the trunk's batch-norm statistics on the training inputs first
    (:func:`polytask.models.norm_stats.recompute_norm_stats`).
    """
    if norm_stats and trunk is None:
        raise PolytaskError("--norm-stats re-estimates a merged trunk's statistics: give --trunk")
    root, run = _find_run(Path(run_dir))
    config = validate(TrainConfig, run["config"], str(root / RUN_FILE))
    if config.stages:
        names = ", ".join(str(s.get("name")) for s in config.stages)
        raise PolytaskError(
            f"{root}: a multi-stage run; evaluate one stage: {root}/stages/<name> ({names})"
        )
    prepared = prepare_data(config, Path(run["config_dir"]))
    shared = _read_trunk(trunk) if trunk is not None else None
    splits = ("val", "test")
    bs = config.evaluation.batch_size
    renorm: dict[str, Any] | None = None
    if shared is not None and norm_stats:
        shared, renorm = _renormalised(config, prepared, shared, bs)
    if run.get("single_task"):
        metrics: dict[str, dict[str, dict[str, float]]] = {s: {} for s in splits}
        for task in (t for t in prepared.taskset.tasks if not t.auxiliary):
            one = PreparedData(
                TaskSet([task]),
                {k: _subset(v, task.name) for k, v in prepared.splits.items()},
                prepared.per_task,
                prepared.info,
            )
            model = _load_model(
                config,
                one,
                root / "single" / task.name / "checkpoints" / "best" / "model.safetensors",
                shared,
            )
            for split, per in evaluate(
                model, one.taskset, {k: one.splits[k] for k in splits}, bs
            ).items():
                metrics[split].update(per)
        weights = str(root / "single" / "*" / "checkpoints" / "best")
    else:
        path = Path(run_dir) / "model.safetensors"
        path = path if path.is_file() else root / "checkpoints" / "best" / "model.safetensors"
        model = _load_model(config, prepared, path, shared)
        scored = eval_model(config, model, prepared.taskset)  # mask ensemble when configured
        metrics = evaluate(scored, prepared.taskset, {k: prepared.splits[k] for k in splits}, bs)
        weights = str(path)
    mode = "merged" if trunk is not None else "evaluation"
    extra: dict[str, Any] = {"mode": mode, "weights": weights}
    extra["trunk"] = str(trunk) if trunk is not None else None
    if renorm is not None:
        extra["norm_stats"] = renorm
    report_path = (
        Path(out_file)
        if out_file
        else root / ("eval-merged.json" if trunk is not None else "eval.json")
    )
    return _finish(
        config,
        prepared,
        metrics,
        extra,
        report_path,
        baseline,
        time.perf_counter(),
        run["config_hash"],
    )
