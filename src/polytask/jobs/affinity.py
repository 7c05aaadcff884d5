"""The affinity job: train for a measurement budget while measuring which tasks help each other.

An affinity config is a training config (:class:`~polytask.config.schema.TrainConfig`, same
keys, same checks) plus an ``affinity:`` section (:class:`AffinitySection`). ``run_affinity``
builds data, model and trainer exactly as ``polytask train`` does, attaches the measures as
trainer callbacks, trains for ``affinity.steps`` steps, then writes ``affinity.json`` and one
heatmap per matrix (:func:`polytask.affinity.save_affinity_report`).

Gradient affinity needs a Gramian. When the configured balancing method computes one (gradient
aggregators such as ``upgrad`` or ``mgda``), the cosine is read from it at no extra cost. When it
does not (no ``balancing``, or a loss weighting), the training recipe is kept as it is and a
probe computes the Gramian after each step on that step's batch, in eval mode: per-task
gradients w.r.t. the shared features (one group of inputs per step: one trunk forward without
graph and ``m`` backward passes through the heads), or w.r.t. the shared parameters when each
task has its own inputs. ``metadata.gradient`` in the report records which was used and what the
probe cost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from polytask._core import PolytaskError
from polytask.affinity import (
    AffinityMatrix,
    AffinityReport,
    GradientAffinity,
    LassoSelection,
    LookaheadAffinity,
    build_affinity_report,
    lasso_source_selection,
    save_affinity_report,
    task_vector_similarity_from_paths,
)
from polytask.affinity.probe import FullBatchLookahead, GradientProbe, lookahead_loss
from polytask.build.data import PreparedData, prepare_data
from polytask.build.loaders import max_steps
from polytask.build.optim import make_scheduler
from polytask.build.training import make_training_parts
from polytask.config.affinity import AffinityCheckpoints, AffinityConfig
from polytask.config.load import load_config
from polytask.config.schema import PerTaskData
from polytask.models import MultiTaskModel
from polytask.tasks import TaskSet
from polytask.tasks.data import TensorData
from polytask.train import FitResult, Trainer

from .output import check_target, output_folder

LASSO_EXAMPLES = 2000

Record = dict[str, object]  # JSON values for the report's metadata


def _check_groups(groups: Sequence[int], m: int, what: str) -> None:
    if m < 2:
        raise PolytaskError(f"affinity needs at least 2 tasks, {what} has {m}")
    if max(groups) > m:
        raise PolytaskError(
            f"affinity.groups: cannot split the {m} tasks of {what} into {max(groups)} groups"
        )


def _task_vectors(
    cfg: AffinityCheckpoints, base_dir: Path, groups: Sequence[int]
) -> tuple[AffinityMatrix, Record]:
    _check_groups(groups, len(cfg.tasks), "affinity.checkpoints.tasks")
    paths = {n: base_dir / p for n, p in cfg.tasks.items()}
    sim = task_vector_similarity_from_paths(
        base_dir / cfg.base,
        paths,
        include=cfg.include,
        exclude=cfg.exclude,
        trust_pickle=cfg.trust_pickle,
        buffers=cfg.buffers,
    )
    desc = f"task-vector cosine (fine-tuned - base, {sim.n_params} parameters)"
    meta: Record = {
        "statistic": desc,
        "base": str(base_dir / cfg.base),
        "n_params": sim.n_params,
        "tensors": len(sim.keys),
    }
    return AffinityMatrix("task_vectors", sim.task_names, sim.cosine, desc), meta


def _lasso(
    model: MultiTaskModel, prepared: PreparedData, targets: Sequence[str], alpha: float
) -> tuple[list[LassoSelection], Record]:
    """Lasso ``nu`` per target: the target head's outputs on validation inputs regressed on
    the source heads' outputs (linear heads on the shared features)."""
    names = list(prepared.taskset.names)
    val = prepared.splits["val"]
    found: list[LassoSelection] = []
    skipped: dict[str, str] = {}
    model.eval()
    for target in targets:
        data = val if isinstance(val, TensorData) else val[target]
        inputs = data.inputs
        x = (
            inputs[:LASSO_EXAMPLES]
            if isinstance(inputs, Tensor)
            else {k: v[:LASSO_EXAMPLES] for k, v in inputs.items()}
        )
        with torch.no_grad():
            outs = {k: v.double().numpy() for k, v in model(x, names).items()}
        y = outs[target]
        if y.ndim != 1:
            skipped[target] = "target head has several outputs"
            continue
        found.append(
            lasso_source_selection(
                target, y, {n: outs[n] for n in names if n != target}, alpha=alpha
            )
        )
    return found, {
        "alpha": alpha,
        "examples": f"up to {LASSO_EXAMPLES} validation inputs",
        "skipped": skipped,
    }


@dataclass(frozen=True)
class _Measures:
    """The trainer callbacks that measure affinity, and what they report."""

    grad: GradientAffinity
    probe: GradientProbe
    look: LookaheadAffinity
    full: FullBatchLookahead
    lr: float

    @classmethod
    def attach(cls, config: AffinityConfig, model: MultiTaskModel, taskset: TaskSet) -> _Measures:
        a = config.affinity
        grad = GradientAffinity(a.ema_rate, task_names=taskset.names)
        probe = GradientProbe(model, taskset, grad)
        lr = a.lookahead_lr or config.train.optimizer.lr
        shared = [f"trunk.{n}" for n, p in model.trunk.named_parameters() if p.requires_grad]
        look = LookaheadAffinity(
            model, shared, lookahead_loss(taskset), lr, a.lookahead_every, taskset.names
        )
        return cls(grad, probe, look, FullBatchLookahead(look, taskset.names), lr)

    def callbacks(self, measures: Sequence[str]) -> list[object]:
        return [cb for name, cb in (("gradient", self.probe), ("lookahead", self.full))
                if name in measures]  # fmt: skip

    def gradient(self, config: AffinityConfig) -> tuple[AffinityMatrix, Record]:
        a, grad, probe = config.affinity, self.grad, self.probe
        if probe.source == "balancer":
            bal = config.balancing
            assert bal is not None  # the balancer gave a Gramian
            stat = f"cosine of the per-task gradients, from the Gramian of the balancing method ({bal.method}, mode {bal.mode})"
        else:
            stat = f"cosine of the per-task gradients w.r.t. the shared {probe.mode}, Gramian computed by a probe after each step (the balancing method computes none)"
        desc = f"gradient cosine (EMA rate {a.ema_rate})"
        meta: Record = {
            "statistic": stat, "source": probe.source, "probe_mode": probe.mode or None,
            "ema_rate": a.ema_rate, "steps_measured": grad.steps, "steps_skipped": grad.skipped_steps,
            "probe_seconds": round(probe.seconds, 3),
        }  # fmt: skip
        return AffinityMatrix("gradient", grad.task_names, grad.matrix(), desc), meta

    def lookahead(
        self, config: AffinityConfig, taskset: TaskSet, plain: float
    ) -> tuple[AffinityMatrix, Record]:
        look, lr = self.look, self.lr
        if look.cost.measurements == 0:
            raise PolytaskError(
                "affinity: lookahead was never measured (no step reached affinity.lookahead_every with all tasks in its batch)"
            )
        cost = vars(look.cost).copy()
        meta: Record = {
            "statistic": f"TAG Z(i->j) = 1 - L_j(after an SGD step of lr {lr} on task i) / L_j(before), mean over {cost['measurements']} batches",
            "lr": lr, "every": config.affinity.lookahead_every, "cost": cost,
            "partial_batches_skipped": self.full.partial_steps,
            "extra_cost_fraction": round(look.cost.seconds / plain, 4),
        }  # fmt: skip
        desc = f"TAG lookahead Z(i->j), lr {lr}"
        return AffinityMatrix("lookahead", taskset.names, look.matrix(), desc), meta


def _measure(
    config: AffinityConfig, prepared: PreparedData, progress: bool
) -> tuple[list[AffinityMatrix], Record, MultiTaskModel]:
    a, taskset = config.affinity, prepared.taskset
    parts = make_training_parts(config, prepared)
    model = parts.model
    total = a.steps or max_steps(config.train, parts.loader.steps_per_epoch)
    measures = _Measures.attach(config, model, taskset)
    trainer = Trainer(
        model, taskset, parts.loader, parts.optimizer, max_steps=total,
        scheduler=make_scheduler(config.train.scheduler, parts.optimizer, total),
        balancer=parts.balancer, grad_clip=config.train.grad_clip,
        callbacks=measures.callbacks(a.measures), progress=progress,
    )  # fmt: skip
    result = trainer.fit()
    extra = measures.probe.seconds + measures.look.cost.seconds
    meta = _training_record(config, result, extra)
    matrices = []
    if "gradient" in a.measures:
        matrix, meta["gradient"] = measures.gradient(config)
        matrices.append(matrix)
    if "lookahead" in a.measures:
        plain = max(result.seconds - extra, 1e-9)
        matrix, meta["lookahead"] = measures.lookahead(config, taskset, plain)
        matrices.append(matrix)
    return matrices, meta, model


def _training_record(config: AffinityConfig, result: FitResult, extra: float) -> Record:
    return {
        "steps": result.steps,
        "training_seconds": round(result.seconds, 3),
        "plain_training_seconds": round(result.seconds - extra, 3),
        "balancing": config.balancing.model_dump(mode="json")
        if config.balancing
        else "none (summed loss)",
    }


def run_affinity(
    config_path: str | Path, out: str | Path, *, overwrite: bool = False, progress: bool = True
) -> AffinityReport:
    """Measure task affinity as the config says; write ``affinity.json`` + heatmaps into ``out``."""
    start = time.perf_counter()
    config_path, out = Path(config_path), Path(out)
    config = load_config(AffinityConfig, config_path)
    a = config.affinity
    check_target(out, resume=False, overwrite=overwrite, can_resume=False)
    look = "lookahead" in a.measures
    base = config_path.resolve().parent
    if isinstance(config.data, PerTaskData) and config.data.sampler.kind != "all" and look:
        raise PolytaskError(
            f"{config_path}: affinity.measures 'lookahead' needs every task in each batch; set data.sampler.kind: all"
        )
    matrices: list[AffinityMatrix] = []
    meta: Record = {"config": str(config_path), "groups": a.groups}
    if a.checkpoints is not None:
        tv, meta["task_vectors"] = _task_vectors(a.checkpoints, base, a.groups)
        matrices.append(tv)
    targets = a.targets
    lasso: list[LassoSelection] = []
    if a.measures:
        prepared = prepare_data(config, base)
        names = prepared.taskset.names
        _check_groups(a.groups, len(names), f"{config_path}")
        unknown = [t for t in targets or () if t not in names]
        if unknown:
            raise PolytaskError(
                f"{config_path}: affinity.targets: unknown task {unknown[0]!r}; tasks: {', '.join(names)}"
            )
        measured, more, model = _measure(config, prepared, progress)
        matrices += measured
        meta.update(tasks=list(names), **more)
        if a.lasso_alpha is not None and config.model.heads.hidden is None:
            lasso, meta["lasso"] = _lasso(model, prepared, targets or names, a.lasso_alpha)
        else:
            meta["lasso"] = {
                "skipped": "heads have a hidden layer"
                if a.lasso_alpha
                else "affinity.lasso_alpha is null"
            }
    meta["wall_seconds"] = round(time.perf_counter() - start, 3)
    report = build_affinity_report(matrices, a.groups, targets, top=a.top, metadata=meta)
    report.lasso.extend(lasso)
    with output_folder(out, "affinity", overwrite=overwrite, can_resume=False) as tmp:
        save_affinity_report(tmp, report)
    return report
