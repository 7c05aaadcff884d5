"""The ``merge`` config: one typed schema, validated on load, and the name → method registry.

This module is the only place where a method name such as ``"ties"`` maps to a class. A config
file looks like::

    method: ties
    options: {density: 0.2, topk: tensor, sign: sum, lam: 1.0}
    base_model: checkpoints/base            # file, sharded index or Hugging Face folder
    models:
      - checkpoints/task-a                  # a plain path...
      - {path: checkpoints/task-b, weight: 0.5, density: 0.3}   # ...or with per-model values
    filters: {exclude: ["classifier.*"]}    # glob (or syntax: regex)
    excluded: base                          # unmerged tensors: copied from the base, or drop
    dtype: bfloat16                         # output dtype of floating tensors (default: base's)
    shard_size: 2GB
    seed: 0                                 # DARE / DELLA masks
    buffers: average                        # running statistics: recompute | base | average | merge
    unwrap: state_dict                      # pickled training checkpoints: the key holding tensors
    strip_prefix: "module."                 # removed from tensor names (DataParallel)

Running statistics (``*.running_mean``, ``*.running_var``: see :mod:`polytask.merging.buffers`)
are never extrapolated by default: ``buffers`` defaults to ``recompute`` (re-estimated on the
run's training inputs after the merge) with ``run:``, and to ``average`` (the fine-tuned models'
mean) without data; ``merge`` merges them like weights (a negative variance is refused).

Instead of ``base_model`` and ``models``, ``run:`` names a single-task run (``polytask train
--single-task``): its base and per-task trunks are merged, and the data-based methods
(:data:`DATA_METHODS`: Fisher, RegMean, AdaMerging) take the run's trunk, each task's own head and
``data: {split, batches, batch_size}`` rows of each task (see :mod:`polytask.jobs.merge_data`).

Relative paths are resolved against the config file's folder. Per-model ``weight`` and
``density`` become the method's per-model ``weights`` / ``density`` tuples. To add a per-tensor
method, add its class to :data:`MERGE_METHODS`; a data-free whole-model one (all tensors in
memory, e.g. ``tall_masks``, ``consensus``) to :data:`MODEL_METHODS`; one that needs a model
and task data to :data:`DATA_METHODS` (with its default ``data.split`` in :data:`DATA_SPLITS`).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from polytask.config.load import read_yaml, validate

if TYPE_CHECKING:
    import torch

__all__ = [
    "BUFFER_POLICIES",
    "DATA_METHODS",
    "DATA_SPLITS",
    "MERGE_METHODS",
    "MODEL_METHODS",
    "FilterConfig",
    "MergeConfig",
    "MergeDataConfig",
    "ModelEntry",
    "load_merge_config",
    "method_class",
    "method_options",
    "method_package",
    "parse_size",
]

#: per-tensor methods, streamed: name → class name in :mod:`polytask.merging.tensor`
MERGE_METHODS: dict[str, str] = {
    "average": "WeightAverage",
    "task_arithmetic": "TaskArithmetic",
    "ties": "Ties",
    "dare": "Dare",
    "dare_ties": "DareTies",
    "breadcrumbs": "Breadcrumbs",
    "della": "Della",
    "slerp": "Slerp",
    "model_stock": "ModelStock",
}
#: whole-model methods without data (all selected tensors in memory): in :mod:`polytask.merging.model`
MODEL_METHODS: dict[str, str] = {
    "tall_masks": "TallMasks",
    "consensus": "ConsensusMerge",
}
#: methods that need an nn.Module and per-task batches (from a config only with ``run:``)
DATA_METHODS: dict[str, str] = {
    "fisher": "FisherMerge",
    "regmean": "RegMean",
    "adamerging": "AdaMerging",
}
# the split each data method reads by default (AdaMerging adapts on unlabelled test inputs;
# TALL masks choose each task's λ on validation rows)
DATA_SPLITS = {"fisher": "train", "regmean": "train", "adamerging": "test", "tall_masks": "val"}
#: running-statistics policies (:mod:`polytask.merging.buffers`)
BUFFER_POLICIES = ("recompute", "base", "average", "merge")
DTYPES = ("float32", "float16", "bfloat16", "float64")
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


def parse_size(value: int | str) -> int:
    """Bytes from an int or a string like ``"500MB"``, ``"2GB"``, ``"1GiB"``."""
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", value, flags=re.IGNORECASE)
        if match is None:
            raise ValueError(f"not a size: {value!r} (use bytes or e.g. '500MB', '2GB')")
        size = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
    if size <= 0:
        raise ValueError(f"size must be positive, got {value!r}")
    return size


class ModelEntry(BaseModel):
    """One fine-tuned model: its path and optional per-model parameters."""

    model_config = ConfigDict(extra="forbid")
    path: str
    weight: float | None = None
    density: float | None = None


class FilterConfig(BaseModel):
    """Which tensors are merged: include/exclude patterns (glob or regex)."""

    model_config = ConfigDict(extra="forbid")
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    syntax: Literal["glob", "regex"] = "glob"


class MergeDataConfig(BaseModel):
    """Rows of each task of a ``run:`` that the data-based methods read."""

    model_config = ConfigDict(extra="forbid")
    split: Literal["train", "val", "test"] | None = None
    batches: int = Field(4, ge=1)
    batch_size: int = Field(64, ge=1)


class MergeConfig(BaseModel):
    """A complete merge job."""

    model_config = ConfigDict(extra="forbid")
    method: str
    options: dict[str, Any] = Field(default_factory=dict)
    base_model: str | None = None
    models: list[ModelEntry] | None = Field(None, min_length=1)
    run: str | None = None
    data: MergeDataConfig = Field(default_factory=MergeDataConfig)
    filters: FilterConfig = Field(default_factory=FilterConfig)
    excluded: Literal["base", "drop"] = "base"
    dtype: Literal["float32", "float16", "bfloat16", "float64"] | None = None
    shard_size: int = 5_000_000_000
    seed: int | None = None
    trust_pickle: bool = False
    buffers: Literal["recompute", "base", "average", "merge"] | None = None
    unwrap: str | None = Field(None, min_length=1)
    strip_prefix: str | None = Field(None, min_length=1)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in MERGE_METHODS and value not in MODEL_METHODS and value not in DATA_METHODS:
            known = ", ".join([*MERGE_METHODS, *MODEL_METHODS, *DATA_METHODS])
            raise ValueError(f"unknown merge method {value!r}; known: {known}")
        return value

    @model_validator(mode="after")
    def _checkpoints(self) -> MergeConfig:
        if self.run is not None and (self.base_model is not None or self.models is not None):
            raise ValueError(
                "give either 'run' (a single-task run) or 'base_model' and 'models', not both"
            )
        if self.method in DATA_METHODS and self.run is None:
            raise ValueError(
                f"merge method {self.method!r} needs a model and per-task data: name a "
                "single-task run with 'run:' (polytask train --single-task), or use the Python "
                f"API (polytask.merging.model.{DATA_METHODS[self.method]})"
            )
        if self.run is None and (self.base_model is None or not self.models):
            raise ValueError("give 'base_model' and 'models' (or 'run': a single-task run)")
        if "data" in self.model_fields_set and self.method not in DATA_SPLITS:
            raise ValueError(
                f"'data' is read only by {', '.join(DATA_SPLITS)}; method {self.method!r} uses "
                "no task data"
            )
        if self.buffers == "recompute" and self.run is None:
            raise ValueError(
                "buffers: 'recompute' re-estimates running statistics on a run's training "
                "inputs: name the run with 'run:', or use 'average' or 'base'"
            )
        return self

    @property
    def data_split(self) -> str:
        """``data.split``, or the method's default split."""
        return self.data.split or DATA_SPLITS.get(self.method, "train")

    @property
    def buffer_policy(self) -> str:
        """``buffers``, or its default: ``recompute`` with ``run:``, else ``average``."""
        return self.buffers or ("recompute" if self.run is not None else "average")

    @field_validator("models", mode="before")
    @classmethod
    def _paths_as_entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("shard_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("shard_size must be a number of bytes or a string like '2GB'")
        return parse_size(value)

    @property
    def torch_dtype(self) -> torch.dtype | None:
        import torch

        return None if self.dtype is None else getattr(torch, self.dtype)


def load_merge_config(path: str | Path) -> MergeConfig:
    """Read and validate a merge config; relative paths become relative to its folder.

    A ``run:`` is resolved to its checkpoints by the merge job
    (:func:`polytask.jobs.merge.run_merge`).
    """
    path = Path(path)
    config = validate(MergeConfig, read_yaml(path), str(path))
    root = path.resolve().parent

    def resolve(p: str) -> str:
        return p if Path(p).is_absolute() else str(root / p)

    if config.run is not None:
        return config.model_copy(update={"run": resolve(config.run)})
    assert config.base_model is not None and config.models is not None
    return config.model_copy(
        update={
            "base_model": resolve(config.base_model),
            "models": [m.model_copy(update={"path": resolve(m.path)}) for m in config.models],
        }
    )


def method_options(name: str) -> list[tuple[str, str, Any]]:
    """(option, type, default) for every option of the method called ``name``."""
    cls = method_class(name)
    hints = typing.get_type_hints(cls)
    return [
        (f.name, _type_name(hints[f.name]), f.default) for f in dataclasses.fields(cls) if f.init
    ]


def _type_name(tp: Any) -> str:
    text = str(tp).replace("typing.", "")
    return re.sub(r"<class '(\w+)'>", r"\1", text)


def method_package(name: str) -> str:
    """The package that exports the class of merge method ``name``."""
    return "polytask.merging.tensor" if name in MERGE_METHODS else "polytask.merging.model"


def method_class(name: str) -> type:
    """The merge method class registered under ``name`` (imported here, on first use)."""
    package = method_package(name)
    registry = {**MERGE_METHODS, **MODEL_METHODS, **DATA_METHODS}
    cls: type = getattr(importlib.import_module(package), registry[name])
    return cls
