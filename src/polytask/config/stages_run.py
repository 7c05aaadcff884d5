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

import json
import shutil
import time
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from polytask._core import PolytaskError, write_text, write_with
from polytask.eval import write_report
from polytask.models import MultiTaskModel, TaskHeads
from polytask.train.distributed import barrier, world

from .data import PreparedData, prepare_data
from .job import RUN_FILE, _finish, _prepare_out, _train_one
from .load import config_hash
from .stages import Stage, parse_stages
from .unlabeled import heldout_smiles, prepare_unlabeled

MODEL_FILE, HEADS_FILE = "model.safetensors", "heads.safetensors"


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
    stage: Stage, stages: list[Stage], out: Path, base: Path, chash: str, resume: bool,
    progress: bool, baseline: str | Path | None, where: str,
) -> dict[str, Any]:  # fmt: skip
    folder = out / "stages" / stage.name
    if resume and (folder / "report.json").is_file() and (folder / MODEL_FILE).is_file():
        report: dict[str, Any] = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        return report
    again = resume and (folder / "checkpoints" / "latest").is_file()
    writes = world()[0] == 0  # under torchrun, rank 0 writes
    if writes and not again and folder.exists():
        shutil.rmtree(folder)  # a stage stopped before its first checkpoint starts over
    if writes:
        folder.mkdir(parents=True, exist_ok=True)
    barrier()
    here = f"{where}: stages[{stage.index}] {stage.name!r}"
    prepared = _prepare(stage, stages, base, here)
    shash = f"{chash}-{stage.name}"
    run = {
        "config": stage.config.model_dump(mode="json"),
        "config_dir": str(base),
        "config_hash": shash,
        "single_task": False,
        "stage": stage.name,
    }
    if writes:
        write_text(folder / RUN_FILE, json.dumps(run, indent=2) + "\n")
    load, loaded = stage.spec.load, []

    def init(model: MultiTaskModel) -> None:
        if load is not None:
            loaded.extend(load_stage_weights(model, out / "stages" / load.from_, load.what, here))

    start = time.perf_counter()
    done = _train_one(stage.config, prepared, folder, again, progress, shash, init=init)
    if writes:
        _save_stage_model(done["model"], folder)
    barrier()  # later stages load these weights
    extra = {
        "mode": "multi-task",
        "stage": stage.name,
        "loaded": None
        if load is None
        else {"from": load.from_, "what": load.what, "heads": loaded},
        "selection": done["selection"],
        "training": done["training"],
    }
    return _finish(
        stage.config,
        prepared,
        done["metrics"],
        extra,
        folder / "report.json",
        baseline,
        start,
        shash,
    )


def run_stages(
    config: Any,
    config_path: Path,
    out: str | Path,
    *,
    single_task: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    baseline: str | Path | None = None,
) -> dict[str, Any]:
    """Train every stage of ``config`` in order; return (and write) the last stage's report."""
    where = str(config_path)
    if single_task:
        raise PolytaskError(f"{where}: --single-task does not apply to a config with 'stages'")
    stages = parse_stages(config, where)  # every stage checked before any data is read
    out = Path(out)
    chash = config_hash(config, ignore=("evaluation", "device"))
    if resume and (out / RUN_FILE).is_file():
        previous = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
        if previous.get("config_hash") != chash:
            raise PolytaskError(
                f"{out}: cannot resume, the config differs from the one this run started with ({config_path})"
            )
    writes = world()[0] == 0
    if writes:
        _prepare_out(out, resume, overwrite)
    base = config_path.resolve().parent
    run = {"config": config.model_dump(mode="json"), "config_dir": str(base), "config_hash": chash}
    if writes and not (out / RUN_FILE).is_file():
        write_text(out / RUN_FILE, json.dumps(run, indent=2) + "\n")
    barrier()
    summary, report = [], {}
    for stage in stages:
        last = stage is stages[-1]
        report = _run_stage(
            stage, stages, out, base, chash, resume, progress, baseline if last else None, where
        )
        summary.append(
            {
                "name": stage.name,
                "report": f"stages/{stage.name}/report.json",
                "means": report.get("means"),
            }
        )
    final = {**report, "stages": summary}
    if writes:
        write_report(out / "report.json", final)
    return final
