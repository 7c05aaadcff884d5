"""The evaluation job: score the selected weights of a finished run on val and test.

With ``trunk`` (e.g. the output of ``polytask merge`` over the ``trunk.safetensors`` of a
single-task run), every task is evaluated with that shared trunk and its own head — the merged
multi-task model — in the same report format as joint training. ``norm_stats`` re-estimates the
trunk's batch-norm statistics on the training inputs first
(:func:`polytask.models.norm_stats.recompute_norm_stats`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from polytask._core import PolytaskError, seed_everything
from polytask.build.data import PreparedData
from polytask.build.model import eval_model, make_model
from polytask.build.standardize import check_statistics, original_units
from polytask.config.schema import TrainConfig
from polytask.eval import (
    Predictions,
    Report,
    load_report,
    predict_split,
    report_json,
    row_groups,
    split_metrics,
)
from polytask.merging.io import open_checkpoint
from polytask.models.norm_stats import recompute_norm_stats
from polytask.tasks.data import TensorData
from polytask.tasks.data.tensors import index_inputs, num_rows
from polytask.train.distributed import world

from .fit import SPLITS, finish_report, one_task, run_baseline, score_splits
from .output import write_output_file
from .results import ReportExtra, Scores
from .run_folder import RunFolder, saved_predictions


def read_trunk(path: str | Path) -> dict[str, Tensor]:
    """The ``trunk.*`` tensors of a checkpoint (file, sharded index or folder), e.g. a merge."""
    reader = open_checkpoint(path)
    state = {k: reader.get(k) for k in reader if k.startswith("trunk.")}
    if not state:
        raise PolytaskError(f"{path}: no 'trunk.*' tensors to evaluate")
    return state


def renormalised(
    config: TrainConfig, prepared: PreparedData, shared: dict[str, Tensor], batch_size: int
) -> tuple[dict[str, Tensor], dict[str, object]]:
    """The trunk ``shared`` with its batch-norm statistics re-estimated on the training inputs
    (every row once, shared by all tasks), and a record of the pass."""
    seed_everything(config.seed, config.train.deterministic)
    model = make_model(
        config.model, config.data, config.multimodal, prepared.taskset, prepared.in_dim
    )
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
    record: dict[str, object] = {
        "split": "train",
        "batches": used,
        "rows": sum(num_rows(p.inputs) for p in parts),
    }
    return state, record


def _score_single(
    folder: RunFolder,
    config: TrainConfig,
    prepared: PreparedData,
    shared: dict[str, Tensor] | None,
    target: Path,
) -> tuple[Scores, dict[str, Predictions]]:
    """Every task's model on its own task; the metrics and the combined predictions (saved
    beside ``target``, rank 0 only)."""
    names = [t.name for t in prepared.taskset.tasks if not t.auxiliary]
    metrics: Scores = {s: {} for s in SPLITS if s in prepared.splits}
    parts: dict[str, dict[str, Predictions]] = {s: {} for s in metrics}
    for name in names:
        one = one_task(prepared, name)
        model = folder.load_model(config, one, folder.single(name).best_weights, shared)
        for split in metrics:
            out = predict_split(
                model, one.taskset, one.splits[split], config.evaluation.batch_size, split
            )
            out = original_units(prepared.info, out)  # standardised targets: data units
            parts[split][name] = out
            metrics[split].update(split_metrics(one.taskset, out))
    combined = {
        s: Predictions(
            {n: p[n].preds[n] for n in names},
            {n: p[n].targets[n] for n in names},
            row_groups(names, prepared.splits[s]),
        )
        for s, p in parts.items()
    }
    if world()[0] == 0:
        for s, p in combined.items():
            p.save(saved_predictions(target, s))
    return metrics, combined


def run_eval(
    run_dir: str | Path, *, baseline: str | Path | None = None,
    out_file: str | Path | None = None, trunk: str | Path | None = None, norm_stats: bool = False,
) -> tuple[Report, Path]:  # fmt: skip
    """Evaluate the selected weights of a run folder; the report and where it was written."""
    if norm_stats and trunk is None:
        raise PolytaskError("--norm-stats re-estimates a merged trunk's statistics: give --trunk")
    folder = RunFolder.find(run_dir)
    config = folder.config()
    if config.stages:
        names = ", ".join(s.name for s in config.stages)
        raise PolytaskError(
            f"{folder.path}: a multi-stage run; evaluate one stage: {folder.path}/stages/<name> ({names})"
        )
    record = folder.record()
    baseline = run_baseline(baseline, folder.remembered_baseline(), config)
    target = Path(out_file) if out_file else folder.eval_file(merged=trunk is not None)
    _, prepared = folder.prepare()
    trained = load_report(folder.report_file).data if folder.finished else None
    check_statistics(prepared.info, trained, str(folder.path))  # same transform as training
    shared = read_trunk(trunk) if trunk is not None else None
    extra: ReportExtra = {"mode": "merged" if trunk is not None else "evaluation"}
    if shared is not None and norm_stats:
        shared, extra["norm_stats"] = renormalised(
            config, prepared, shared, config.evaluation.batch_size
        )
    if record.single_task:
        metrics, predictions = _score_single(folder, config, prepared, shared, target)
        extra["weights"] = str(folder.path / "single" / "*" / "checkpoints" / "best")
    else:
        path = Path(run_dir) / "model.safetensors"  # a checkpoints/<name> folder was given
        path = path if path.is_file() else folder.best_weights
        model = folder.load_model(config, prepared, path, shared)
        scored = eval_model(config.multimodal, model, prepared.taskset)  # mask ensemble if set
        bs = config.evaluation.batch_size
        metrics, predictions = score_splits(scored, prepared, bs, target)
        extra["weights"] = str(path)
    extra["trunk"] = str(trunk) if trunk is not None else None
    start = time.perf_counter()
    report = finish_report(
        config, prepared, metrics, extra, baseline, start, record.config_hash, predictions, target
    )
    if world()[0] == 0:
        write_output_file(target, report_json(report))
    return report, target
