"""The merge job: a merge config → the method (built once) → a merged checkpoint folder.

Per-tensor methods stream tensors one at a time; whole-model methods (``tall_masks``,
``consensus``) load every selected tensor of all models; data-based ones (``fisher``,
``regmean``, ``adamerging``) also read a few batches of each task of the config's ``run:``.
The output folder follows :mod:`polytask.jobs.output`: sharded safetensors plus ``merge.json``
recording the method and every option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypedDict

import torch

from polytask._core import write_text
from polytask.build.merge import build_merge_method
from polytask.config.merge import MergeConfig, ModelEntry, load_merge_config
from polytask.merging import merge_checkpoints, merge_model_checkpoints
from polytask.merging.model import ModelMerge
from polytask.merging.tensor import TensorMerge

from .merge_data import merge_inputs, run_checkpoints
from .output import MARKER, output_folder
from .results import MergeResult


class FolderOptions(TypedDict):
    """The keyword arguments both file-level merges take from a merge config."""

    include: list[str]
    exclude: list[str]
    syntax: Literal["glob", "regex"]
    excluded: Literal["base", "drop"]
    dtype: torch.dtype | None
    max_shard_bytes: int
    overwrite: bool
    trust_pickle: bool
    record: dict[str, object]


def resolve_run(config: MergeConfig, where: str) -> MergeConfig:
    """``config`` with a ``run:`` turned into its base and per-task trunk checkpoints."""
    if config.run is None:
        return config
    base, models, _ = run_checkpoints(Path(config.run), where)
    entries = [ModelEntry(path=str(m)) for m in models]
    return config.model_copy(update={"base_model": str(base), "models": entries})


def run_merge(
    config_path: str | Path, out: str | Path, *, overwrite: bool = False, progress: bool = True
) -> MergeResult:
    """Merge the checkpoints the config at ``config_path`` names into the folder ``out``."""
    where = str(config_path)
    cfg = resolve_run(load_merge_config(config_path), where)
    method = build_merge_method(cfg, where=where)  # unknown options fail here, before any I/O
    record: dict[str, object] = {"name": cfg.method, "seed": cfg.seed, "config": where}
    assert cfg.base_model is not None and cfg.models is not None
    paths = [m.path for m in cfg.models]
    with output_folder(out, "merge", overwrite=overwrite, can_resume=False) as work:
        _merge_into(work, cfg, method, paths, record, progress, where)
        write_text(work / MARKER, '{"command": "merge"}\n')
    return MergeResult(Path(out), cfg.method, len(paths), record)


def _merge_into(
    work: Path, cfg: MergeConfig, method: TensorMerge | ModelMerge, paths: list[str],
    record: dict[str, object], progress: bool, where: str,
) -> None:  # fmt: skip
    """Run ``method`` on the config's checkpoints into the folder ``work``."""
    assert cfg.base_model is not None
    common = FolderOptions(
        include=cfg.filters.include, exclude=cfg.filters.exclude, syntax=cfg.filters.syntax,
        excluded=cfg.excluded, dtype=cfg.torch_dtype, max_shard_bytes=cfg.shard_size,
        overwrite=True, trust_pickle=cfg.trust_pickle, record=record,
    )  # fmt: skip
    if not isinstance(method, ModelMerge):
        merge_checkpoints(method, cfg.base_model, paths, work, progress=progress, **common)
        return
    data = None
    if method.needs and cfg.run is not None:
        d = cfg.data
        data, record["data"] = merge_inputs(
            Path(cfg.run), method, cfg.data_split, d.batches, d.batch_size, where
        )
    merge_model_checkpoints(method, cfg.base_model, paths, work, data=data, **common)
