"""The merge job: a merge config → the method (built once) → a merged checkpoint folder.

Per-tensor methods stream tensors one at a time; whole-model methods (``tall_masks``,
``consensus``) load every selected tensor of all models; data-based ones (``fisher``,
``regmean``, ``adamerging``) also read a few batches of each task of the config's ``run:``.
The output folder follows :mod:`polytask.jobs.output`: sharded safetensors plus ``merge.json``
recording the method and every option.

Running statistics follow ``buffers`` (:mod:`polytask.merging.buffers`); under ``recompute`` (the
default with ``run:``) the merge writes their average and :func:`recompute_buffers` then
re-estimates them on the run's training inputs with the merged weights (as ``polytask eval
--norm-stats``) and rewrites them, recording the pass. ``tall_masks`` with ``run:`` chooses each
task's λ on validation rows (:func:`~polytask.jobs.merge_data.tall_validation`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, TypedDict

import torch
from safetensors.torch import load_file, save_file

from polytask._core import write_text, write_with
from polytask.build.merge import build_merge_method
from polytask.config.merge import MergeConfig, ModelEntry, load_merge_config
from polytask.merging import merge_checkpoints, merge_model_checkpoints
from polytask.merging.buffers import check_written
from polytask.merging.folder import MERGE_RECORD_FILE
from polytask.merging.model import ModelMerge, TallMasks
from polytask.merging.tensor import TensorMerge

from .eval import renormalised
from .merge_data import merge_inputs, run_checkpoints, tall_validation
from .output import MARKER, output_folder
from .results import MergeResult
from .run_folder import RunFolder


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
    buffers: Literal["base", "average", "merge"]
    unwrap: str | None
    strip_prefix: str | None


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
        if cfg.buffer_policy == "recompute":
            assert cfg.run is not None
            recompute_buffers(work, Path(cfg.run), where)
        write_text(work / MARKER, '{"command": "merge"}\n')
    return MergeResult(Path(out), cfg.method, len(paths), record)


def _merge_into(
    work: Path, cfg: MergeConfig, method: TensorMerge | ModelMerge, paths: list[str],
    record: dict[str, object], progress: bool, where: str,
) -> None:  # fmt: skip
    """Run ``method`` on the config's checkpoints into the folder ``work``."""
    assert cfg.base_model is not None
    policy = cfg.buffer_policy
    written: Literal["base", "average", "merge"] = (
        "base" if policy == "base" else "merge" if policy == "merge" else "average"
    )
    common = FolderOptions(
        include=cfg.filters.include, exclude=cfg.filters.exclude, syntax=cfg.filters.syntax,
        excluded=cfg.excluded, dtype=cfg.torch_dtype, max_shard_bytes=cfg.shard_size,
        overwrite=True, trust_pickle=cfg.trust_pickle, record=record,
        buffers=written,
        unwrap=cfg.unwrap, strip_prefix=cfg.strip_prefix,
    )  # fmt: skip
    if not isinstance(method, ModelMerge):
        merge_checkpoints(method, cfg.base_model, paths, work, progress=progress, **common)
        return
    data: dict[str, object] | None = None
    d = cfg.data
    if method.needs and cfg.run is not None:
        data, record["data"] = merge_inputs(
            Path(cfg.run), method, cfg.data_split, d.batches, d.batch_size, where
        )
    elif isinstance(method, TallMasks) and cfg.run is not None:
        validate, record["data"] = tall_validation(
            Path(cfg.run), cfg.data_split, d.batches, d.batch_size, where
        )
        data = {"validate": validate}
    merge_model_checkpoints(method, cfg.base_model, paths, work, data=data, **common)


def recompute_buffers(work: Path, run: Path, where: str) -> None:
    """Re-estimate the running statistics of the merged trunk in ``work`` on the training inputs
    of ``run`` and rewrite them (shards and ``merge.json``); refused if one is not finite."""
    info = json.loads((work / MERGE_RECORD_FILE).read_text(encoding="utf-8"))
    stats = [k for k in info.get("buffer_tensors", []) if not k.endswith("num_batches_tracked")]
    info["buffers"] = "recompute"
    info["norm_stats"] = None
    if stats:
        files = [work / f for f in info["files"]]
        merged = {k: v for f in files for k, v in load_file(str(f)).items()}
        config, prepared = RunFolder(run).prepare()
        state, info["norm_stats"] = renormalised(
            config, prepared, merged, config.evaluation.batch_size
        )
        for key in stats:
            check_written(key, state[key], where)
        meta = {"format": "pt", "polytask.merge": json.dumps(info, sort_keys=True)}
        for file in files:
            tensors = load_file(str(file))
            for key in stats:
                if key in tensors:
                    tensors[key] = state[key].to(tensors[key].dtype).contiguous()
            _save(file, tensors, meta)
    write_text(work / MERGE_RECORD_FILE, json.dumps(info, indent=2, sort_keys=True) + "\n")


def _save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
