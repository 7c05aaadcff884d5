"""Run a multi-stage recipe: each stage is one ordinary training job in ``<out>/stages/<name>/``.

Layout of a run folder::

    <out>/run.json                   the whole config (resume checks its hash)
    <out>/stages/<name>/run.json     the stage's derived config (``polytask eval`` works on it)
    <out>/stages/<name>/checkpoints/ logs/ report.json
    <out>/stages/<name>/model.safetensors   the stage's selected weights (what later stages load)
    <out>/stages/<name>/heads.safetensors   the same heads, one entry per task (``<task>.<param>``)
    <out>/report.json                the last stage's report plus a ``stages`` summary

Resume: a stage whose ``report.json`` exists is done and skipped; a stage with a checkpoint
continues from it bit-exactly; a stage without one restarts from its beginning. Every stage
seeds the RNGs from the config's seed before building its model, so a resumed recipe ends
bit-identical to an uninterrupted one, wherever it was stopped (also exactly between stages).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor

from polytask._core import PolytaskError, write_with
from polytask.build.data import PreparedData, prepare_data
from polytask.build.unlabeled import heldout_smiles, prepare_unlabeled
from polytask.config.schema import TrainConfig
from polytask.config.stages import Stage, parse_stages
from polytask.eval import Report, load_report, write_report
from polytask.models import MultiTaskModel, TaskHeads
from polytask.train.distributed import barrier, world

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
from .results import ReportExtra
from .run_folder import MODEL_FILE, RunFolder, RunRecord

HEADS_FILE = "heads.safetensors"


def head_state(model: MultiTaskModel) -> dict[str, Tensor]:
    """Every task's head parameters as ``<task>.<param>`` (independent of how heads are stored)."""
    heads = model.heads
    if not isinstance(heads, TaskHeads):
        raise PolytaskError(f"stages: cannot carry heads of type {type(heads).__name__}")
    return heads.task_state()


def load_stage_weights(model: MultiTaskModel, folder: Path, what: str, where: str) -> list[str]:
    """Copy the trunk (and, for ``trunk+heads``, the heads of shared tasks) saved in ``folder``.

    Returns the names of the tasks whose heads were loaded; every other head keeps its fresh
    initialisation.
    """
    saved = load_file(str(folder / MODEL_FILE))
    own = model.state_dict()
    trunk = {k: v for k, v in saved.items() if k.startswith("trunk.")}
    mine = {k for k in own if k.startswith("trunk.")}
    if set(trunk) != mine or any(trunk[k].shape != own[k].shape for k in mine):
        raise PolytaskError(
            f"{where}: key 'load': the trunk of stage folder {folder.name!r} does not fit this stage's trunk (change 'model' only at the top level)"
        )
    model.load_state_dict(trunk, strict=False)
    if what != "trunk+heads":
        return []
    theirs, current = load_file(str(folder / HEADS_FILE)), head_state(model)
    tasks = sorted({k.split(".", 1)[0] for k in current} & {k.split(".", 1)[0] for k in theirs})
    update = {}
    for key, value in current.items():
        if key.split(".", 1)[0] in tasks:
            if key not in theirs or theirs[key].shape != value.shape:
                raise PolytaskError(
                    f"{where}: key 'load.what': head tensor {key!r} differs in shape or layout"
                )
            update[key] = theirs[key]
    _set_heads(model, update)
    return tasks


def _set_heads(model: MultiTaskModel, update: dict[str, Tensor]) -> None:
    heads = model.heads
    assert isinstance(heads, TaskHeads)  # head_state() checked it
    heads.load_task_state(update)


def _save_stage_model(model: MultiTaskModel, folder: Path) -> None:
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    heads = {k: v.contiguous() for k, v in head_state(model).items()}
    meta = {"format": "pt", "polytask": "stage"}
    write_with(folder / MODEL_FILE, lambda tmp: save_file(state, str(tmp), metadata=meta))
    write_with(folder / HEADS_FILE, lambda tmp: save_file(heads, str(tmp), metadata=meta))


def _prepare(stage: Stage, stages: list[Stage], base: Path, where: str) -> PreparedData:
    unlabeled = stage.unlabeled
    if unlabeled is None:
        return prepare_data(stage.config, base)
    exclude: set[str] = set()
    if unlabeled.exclude_test:
        for other in stages:
            if other.unlabeled is None:
                exclude |= heldout_smiles(other.config.data, base)
    supervised = [t.name for t in stage.spec.tasks or []]
    auxiliary = list(stage.config.auxiliary or [])
    return prepare_unlabeled(
        unlabeled, supervised, auxiliary, stage.config.seed, base, exclude, where
    )


def _run_stage(
    stage: Stage, stages: list[Stage], root: RunFolder, base: Path, chash: str, resume: bool,
    progress: bool, baseline: str | Path | None, where: str,
) -> Report:  # fmt: skip
    folder = root.stage(stage.name)
    if resume and folder.finished and (folder.path / MODEL_FILE).is_file():
        return load_report(folder.report_file)
    writes = world()[0] == 0  # under torchrun, rank 0 writes
    if writes and folder.path.exists() and not (resume and folder.has_checkpoint):
        shutil.rmtree(folder.path)  # a stage stopped before its first checkpoint starts over
    if writes:
        folder.path.mkdir(parents=True, exist_ok=True)
    barrier()
    here = f"{where}: stages[{stage.index}] {stage.name!r}"
    prepared = _prepare(stage, stages, base, here)
    shash = f"{chash}-{stage.name}"
    if writes:
        folder.write_record(RunRecord(
            config=stage.config.model_dump(mode="json"), config_dir=str(base), config_hash=shash,
            baseline=str(baseline) if baseline is not None else None,
        ))  # fmt: skip
    load, loaded = stage.spec.load, []

    def init(model: MultiTaskModel) -> None:
        if load is not None:
            src = root.stage(load.from_).path
            loaded.extend(load_stage_weights(model, src, load.what, here))

    start = time.perf_counter()
    done = train_one(
        stage.config, prepared, folder, resume=resume, progress=progress, chash=shash, init=init
    )
    if writes:
        _save_stage_model(done.model, folder.path)
    barrier()  # later stages load these weights
    carried: dict[str, object] | None = (
        None if load is None else {"from": load.from_, "what": load.what, "heads": loaded}
    )
    extra: ReportExtra = {
        "mode": "multi-task",
        "stage": stage.name,
        "loaded": carried,
        **done.summary(),
    }
    report = finish_report(
        stage.config, prepared, done.metrics, extra, baseline, start, shash, done.predictions,
        folder.report_file,
    )  # fmt: skip
    if writes:
        write_report(folder.report_file, report)
    return report


def run_stages(
    config: TrainConfig, config_path: Path, out: str | Path, *, single_task: bool = False,
    resume: bool = False, overwrite: bool = False, progress: bool = True,
    baseline: str | Path | None = None,
) -> Report:  # fmt: skip
    """Train every stage of ``config`` in order; return (and write) the last stage's report.

    With ``single_task``, the baselines of the recipe: one model per task of the last stage,
    trained from scratch with the last stage's recipe (no earlier stage, no balancing).
    """
    where = str(config_path)
    stages = parse_stages(config, where)  # every stage checked before any data is read
    if single_task:
        return _single_task_stage(
            stages[-1], config_path, out, resume, overwrite, progress, baseline
        )
    chash = train_hash(config, False)
    writes = world()[0] == 0
    with training_folder(out, config_path, chash, resume=resume, overwrite=overwrite) as root:
        base = config_path.resolve().parent
        kept = root.remembered_baseline() if resume else None
        baseline = run_baseline(baseline, kept, config)
        if writes and (not root.run_file.is_file() or kept != baseline):
            root.write_record(RunRecord(
                config=config.model_dump(mode="json"), config_dir=str(base), config_hash=chash,
                baseline=baseline,
            ))  # fmt: skip
        barrier()
        summary: list[dict[str, object]] = []
        for stage in stages:
            last = stage is stages[-1]
            report = _run_stage(
                stage, stages, root, base, chash, resume, progress, baseline if last else None, where
            )  # fmt: skip
            summary.append(
                {"name": stage.name, "report": f"stages/{stage.name}/report.json", "means": report.means}
            )  # fmt: skip
        where_saved = {
            k: f"stages/{stages[-1].name}/{v}" for k, v in (report.predictions or {}).items()
        }
        final = report.model_copy(update={"stages": summary, "predictions": where_saved or None})
        if writes:
            write_report(root.report_file, final)
    return final


def _single_task_stage(
    stage: Stage, config_path: Path, out: str | Path, resume: bool, overwrite: bool,
    progress: bool, baseline: str | Path | None,
) -> Report:  # fmt: skip
    config = single_task_config(stage.config)
    chash = train_hash(config, True)
    writes = world()[0] == 0
    with training_folder(out, config_path, chash, resume=resume, overwrite=overwrite) as folder:
        base = config_path.resolve().parent
        prepared = prepare_data(config, base)
        kept = folder.remembered_baseline() if resume else None
        baseline = run_baseline(baseline, kept, config)
        if writes:
            folder.write_record(RunRecord(
                config=config.model_dump(mode="json"), config_dir=str(base), config_hash=chash,
                single_task=True, baseline=baseline,
            ))  # fmt: skip
        start = time.perf_counter()
        metrics, extra = train_single(config, prepared, folder, resume, progress, chash)
        predictions = combine_single(folder, prepared) if writes else None
        extra["stage"] = stage.name
        if stage.config.balancing is not None:
            extra["balancing_dropped"] = "single-task runs train one task: no balancing"
        report = finish_report(
            config, prepared, metrics, extra, baseline, start, chash, predictions,
            folder.report_file,
        )  # fmt: skip
        if writes:
            write_report(folder.report_file, report)
    return report
