"""Checkpoints, model and per-task data of a single-task run, for ``polytask merge`` with ``run:``.

A merge config may name a run written by ``polytask train --single-task`` instead of listing
checkpoints::

    method: fisher
    options: {likelihood: bernoulli}
    run: ../runs/tox21-single
    data: {split: train, batches: 4, batch_size: 64}

The checkpoints are the run's ``base/trunk.safetensors`` and ``single/<task>/trunk.safetensors``,
in the run's task order. The methods that need a model and data (Fisher, RegMean, AdaMerging)
get them from the same run:

* ``model``: the run's trunk, whose state dict is exactly the ``trunk.*`` tensors being merged;
* ``select(z, t)``: task t's own fine-tuned head applied to the trunk output (heads are not
  merged: ``polytask eval RUN --trunk MERGED`` evaluates each task with its own head);
* ``data``: per task, ``batches`` batches of ``batch_size`` rows of ``split`` that carry a label
  for that task, in a random order seeded by the run's seed, as ``(inputs, labels)``.

TALL masks with ``run:`` choose each task's λ on ``data.split`` (default ``val``) rows:
:func:`tall_validation` scores a rebuilt task model by minus its mean loss under the task's head.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from polytask._core import PolytaskError
from polytask.eval import load_report
from polytask.merging.buffers import is_buffer
from polytask.merging.model import ModelMerge
from polytask.tasks import Task
from polytask.tasks.data import TensorData

from .fit import one_task
from .run_folder import RunFolder, RunRecord

__all__ = ["merge_inputs", "run_checkpoints", "tall_validation"]

# what each Fisher likelihood can score: the head output of these task kinds
_LIKELIHOOD_KINDS = {"bernoulli": ("binary", "multilabel"), "categorical": ("multiclass",)}


def _single_task_run(run: Path, where: str) -> tuple[RunFolder, RunRecord]:
    folder = RunFolder(run)
    if not folder.run_file.is_file():
        raise PolytaskError(
            f"{where}: key 'run': {run} is not a polytask run folder (no {folder.run_file.name})"
        )
    record = folder.record()
    if not record.single_task:
        raise PolytaskError(
            f"{where}: key 'run': {run} is not a single-task run (train it with --single-task)"
        )
    return folder, record


def run_checkpoints(run: Path, where: str) -> tuple[Path, list[Path], list[str]]:
    """``(base, [task trunks], [task names])`` of a finished single-task run, in task order."""
    folder, _ = _single_task_run(run, where)
    if not folder.finished:
        raise PolytaskError(f"{where}: key 'run': {run} has not finished (no report.json)")
    tasks = list(load_report(folder.report_file).runs or {})
    if not tasks:
        raise PolytaskError(f"{where}: key 'run': {folder.report_file} lists no task runs")
    paths = [folder.single(t).trunk_file for t in tasks]
    for path in [folder.base_trunk, *paths]:
        if not path.is_file():
            raise PolytaskError(f"{where}: key 'run': {path} does not exist")
    return folder.base_trunk, paths, tasks


class _Trunk(nn.Module):
    """The run's trunk under the name ``trunk``: its state dict keys are the merged tensors."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, inputs: Tensor) -> Tensor:
        out: Tensor = self.trunk(inputs)
        return out


def _labelled_rows(y: Tensor) -> Tensor:
    if not y.is_floating_point():
        return torch.arange(y.shape[0])
    known = ~torch.isnan(y)
    return (known if known.dim() == 1 else known.any(dim=1)).nonzero()[:, 0]


def _batches(
    data: TensorData, task: str, batches: int, batch_size: int, seed: int, where: str
) -> list[tuple[Tensor, Tensor]]:
    if not isinstance(data.inputs, Tensor):
        raise PolytaskError(
            f"{where}: task {task!r}: data-based merges from a config need tensor inputs "
            "(table or image data); use the Python API (polytask.merging.model) for other inputs"
        )
    y = data.targets[task]
    rows = _labelled_rows(y)
    if rows.numel() == 0:
        raise PolytaskError(f"{where}: task {task!r} has no labelled rows in this split")
    gen = torch.Generator().manual_seed(seed)
    rows = rows[torch.randperm(rows.numel(), generator=gen)][: batches * batch_size]
    return [(data.inputs[idx], y[idx]) for idx in torch.split(rows, batch_size) if idx.numel() > 0]


def _check_likelihood(
    method: object, kinds: Sequence[str], tasks: Sequence[str], where: str
) -> None:
    likelihood = getattr(method, "likelihood", None)
    if likelihood is None:
        return
    for task, kind in zip(tasks, kinds):
        if kind not in _LIKELIHOOD_KINDS.get(likelihood, ()):
            fits = [name for name, ok in _LIKELIHOOD_KINDS.items() if kind in ok]
            hint = (
                f"set options.likelihood: {fits[0]}"
                if fits
                else "Fisher merging needs a classification likelihood"
            )
            raise PolytaskError(
                f"{where}: task {task!r} is {kind}, which likelihood {likelihood!r} cannot score; {hint}"
            )


@dataclass
class _Parts:
    """What a run gives a data-based merge: task names and tasks, the trunk, each task's head,
    batches and own running statistics."""

    names: list[str]
    tasks: list[Task]
    trunk: nn.Module
    heads: list[nn.Module]
    data: list[list[tuple[Tensor, Tensor]]]
    stats: list[dict[str, Tensor]]

    def select(self, out: Tensor, t: int) -> Tensor:
        head_out: Tensor = self.heads[t](out, [self.names[t]])[self.names[t]]
        return head_out

    def record(self, run: Path, split: str, batches: int, batch_size: int) -> dict[str, object]:
        rows = {n: sum(int(b[0].shape[0]) for b in d) for n, d in zip(self.names, self.data)}
        return {
            "run": str(run), "tasks": self.names, "split": split, "batches": batches,
            "batch_size": batch_size, "rows": rows,
        }  # fmt: skip


def _parts(
    run: Path, method: object, split: str, batches: int, batch_size: int, where: str
) -> _Parts:
    folder, _ = _single_task_run(run, where)
    _, _, names = run_checkpoints(run, where)
    config, prepared = folder.prepare()
    tasks = [prepared.taskset[n] for n in names]
    _check_likelihood(method, [t.kind for t in tasks], names, where)
    if split not in prepared.splits:
        raise PolytaskError(f"{where}: key 'data.split': the run has no split {split!r}")
    parts = _Parts(names, tasks, nn.Identity(), [], [], [])
    for index, task in enumerate(tasks):
        one = one_task(prepared, task.name)
        weights = folder.single(task.name).best_weights
        model = folder.load_model(config, one, weights).eval().requires_grad_(False)
        if index == 0:
            parts.trunk = _Trunk(model.trunk)
        own = _Trunk(model.trunk).state_dict()
        parts.stats.append({k: v.clone() for k, v in own.items() if is_buffer(k)})
        parts.heads.append(model.heads)
        part = one.splits[split]
        table = part if isinstance(part, TensorData) else part[task.name]
        parts.data.append(_batches(table, task.name, batches, batch_size, config.seed, where))
    return parts


def merge_inputs(
    run: Path, method: ModelMerge, split: str, batches: int, batch_size: int, where: str
) -> tuple[dict[str, object], dict[str, object]]:
    """``model``, ``data`` and ``select`` for ``method.merge`` from a single-task run, and a
    record of the data used (for ``merge.json``)."""
    parts = _parts(run, method, split, batches, batch_size, where)
    inputs: dict[str, object] = {"model": parts.trunk, "data": parts.data}
    if "select" in inspect.signature(method.merge).parameters:  # heads pick each task's output
        inputs["select"] = parts.select
    return inputs, parts.record(run, split, batches, batch_size)


def tall_validation(
    run: Path, split: str, batches: int, batch_size: int, where: str
) -> tuple[Callable[[int, dict[str, Tensor]], float], dict[str, object]]:
    """``validate(task, state) -> score`` for TALL masks' per-task λ: minus task t's mean loss
    on ``batches`` batches of ``split`` for the trunk ``state`` (a rebuilt task model, with
    task t's own running statistics) under task t's own head; and the record of the data."""
    parts = _parts(run, None, split, batches, batch_size, where)

    def validate(t: int, state: dict[str, Tensor]) -> float:
        full = {**parts.stats[t], **state}
        total, rows = 0.0, 0
        with torch.no_grad():
            for inputs, labels in parts.data[t]:
                out = torch.func.functional_call(parts.trunk, full, (inputs,))
                loss = parts.tasks[t].compute_loss(parts.select(out, t), labels)
                total += float(loss) * int(inputs.shape[0])
                rows += int(inputs.shape[0])
        return -total / max(rows, 1)

    record = parts.record(run, split, batches, batch_size)
    record["score"] = "minus the task's mean loss (its own head), higher is better"
    return validate, record
