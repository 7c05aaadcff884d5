"""``RunFolder``: the layout of a training run, in one place.

::

    <run>/run.json                       the config, its folder, hash and baseline (RunRecord)
    <run>/report.json                    the report (polytask.eval.Report)
    <run>/predictions/<split>.safetensors   val and test outputs (polytask.eval.Predictions);
                                         a single-task run: every task's, combined
    <run>/checkpoints/best/              the selected weights (model.safetensors + meta.json)
    <run>/checkpoints/latest, step-*/    resumable checkpoints
    <run>/logs/                          metrics.jsonl, gramian.safetensors
    <run>/base/trunk.safetensors         single-task runs: the shared initial trunk
    <run>/single/<task>/                 single-task runs: one run folder per task
    <run>/stages/<name>/                 multi-stage runs: one run folder per stage
    <run>/eval.json, eval-merged.json    polytask eval (its predictions: predictions/eval*/)

:meth:`RunFolder.load_model` loads a finished run back into a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor

from polytask._core import PolytaskError, resolve_device, seed_everything, write_text
from polytask.build.data import PreparedData, prepare_data
from polytask.build.model import make_model
from polytask.config.load import format_validation_error, validate
from polytask.config.schema import TrainConfig
from polytask.eval import load_report
from polytask.models import MultiTaskModel
from polytask.train import load_weights

RUN_FILE = "run.json"
REPORT_FILE = "report.json"
MODEL_FILE = "model.safetensors"
#: trunk-only weights (keys ``trunk.*``) of single-task runs: ``base/`` holds the shared
#: initialisation every task starts from, ``single/<task>/`` each task's selected trunk, so the
#: task trunks can be merged (``polytask merge``) and evaluated (``polytask eval --trunk``).
TRUNK_FILE = "trunk.safetensors"


class RunRecord(BaseModel):
    """``run.json``: what a run was started with."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    config: dict[str, object]
    config_dir: str
    config_hash: str
    single_task: bool = False
    baseline: str | None = None  # the baseline report (absolute), kept by --resume and eval


@dataclass(frozen=True)
class RunFolder:
    """A run folder (or one of its single-task or stage sub-runs)."""

    path: Path

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def report_file(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best_weights(self) -> Path:
        return self.checkpoints / "best" / MODEL_FILE

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest"

    @property
    def base_trunk(self) -> Path:
        return self.path / "base" / TRUNK_FILE

    @property
    def trunk_file(self) -> Path:
        return self.path / TRUNK_FILE

    def predictions(self, split: str) -> Path:
        return saved_predictions(self.report_file, split)

    def single(self, task: str) -> RunFolder:
        return RunFolder(self.path / "single" / task)

    def stage(self, name: str) -> RunFolder:
        return RunFolder(self.path / "stages" / name)

    def eval_file(self, merged: bool) -> Path:
        return self.path / ("eval-merged.json" if merged else "eval.json")

    @property
    def has_checkpoint(self) -> bool:
        return self.latest.is_file()

    @property
    def finished(self) -> bool:
        return self.report_file.is_file()

    @classmethod
    def find(cls, path: str | Path) -> RunFolder:
        """The run folder at ``path``, or the one holding ``path`` (``<run>/checkpoints/<name>``)."""
        path = Path(path)
        for root in (path, path.parent.parent):
            if (root / RUN_FILE).is_file():
                return cls(root)
        raise PolytaskError(f"{path}: not a polytask run folder (no {RUN_FILE})")

    def record(self) -> RunRecord:
        """``run.json``, validated; a missing or damaged file is one line."""
        try:
            data = json.loads(self.run_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PolytaskError(f"{self.path}: not a polytask run folder (no {RUN_FILE})") from None
        except (OSError, ValueError) as exc:
            raise PolytaskError(f"{self.run_file}: not valid JSON ({exc})") from None
        try:
            return RunRecord.model_validate(data)
        except ValidationError as exc:
            raise PolytaskError(format_validation_error(exc, str(self.run_file), data)) from None

    def remembered_baseline(self) -> str | None:
        """The baseline the run was compared with: ``run.json``'s, else (a run from before it
        was stored there) the source its report names; None for a new folder."""
        if not self.run_file.is_file():
            return None
        kept = self.record().baseline
        if kept is None and self.report_file.is_file():
            kept = (load_report(self.report_file).baseline or {}).get("source")
        return None if kept is None else str(kept)

    def write_record(self, record: RunRecord) -> None:
        write_text(self.run_file, json.dumps(record.model_dump(mode="json"), indent=2) + "\n")

    def config(self) -> TrainConfig:
        """The run's training config, validated."""
        return validate(TrainConfig, self.record().config, str(self.run_file))

    def prepare(self) -> tuple[TrainConfig, PreparedData]:
        """The run's config and its data, read again from where the config said."""
        config = self.config()
        return config, prepare_data(config, Path(self.record().config_dir))

    def load_model(
        self, config: TrainConfig, prepared: PreparedData, weights: Path | None = None,
        trunk: Mapping[str, Tensor] | None = None,
    ) -> MultiTaskModel:  # fmt: skip
        """The run's model with its selected weights (or ``weights``); ``trunk`` replaces the
        ``trunk.*`` tensors (e.g. a merge of the single-task trunks)."""
        weights = weights if weights is not None else self.best_weights
        if not weights.is_file():
            raise PolytaskError(f"no weights found at {weights}")
        seed_everything(config.seed, config.train.deterministic)
        model = make_model(
            config.model, config.data, config.multimodal, prepared.taskset, prepared.in_dim
        )
        load_weights(model, weights)
        if trunk is not None:
            replace_trunk(model, trunk)
        return model.to(resolve_device(config.device))


def saved_predictions(report: Path, split: str) -> Path:
    """Where the predictions behind a report file are saved: ``predictions/<split>.safetensors``
    beside ``report.json``, ``predictions/<stem>/<split>.safetensors`` beside any other."""
    folder = report.parent / "predictions"
    if report.name != REPORT_FILE:
        folder = folder / report.stem
    return folder / f"{split}.safetensors"


def replace_trunk(model: MultiTaskModel, trunk: Mapping[str, Tensor]) -> None:
    """Load the ``trunk.*`` tensors ``trunk`` into ``model``; names and shapes must match."""
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
