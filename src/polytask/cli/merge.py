"""``polytask merge CONFIG.yaml --out DIR``: stream-merge fine-tuned checkpoints into one model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from polytask.config.merge import (
    DATA_METHODS,
    DATA_SPLITS,
    MERGE_METHODS,
    MODEL_METHODS,
    build_merge_method,
    load_merge_config,
    method_options,
)

__all__ = ["merge_command"]


def _methods_help() -> str:
    lines = ["\b", "Methods and their options (option: type = default):"]
    groups = (
        ("Per tensor, streamed (memory: a few tensors):", MERGE_METHODS),
        ("Whole model, no data (memory: every selected tensor of all models):", MODEL_METHODS),
    )
    for title, registry in groups:
        lines.append(title)
        for name, cls in registry.items():
            doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
            lines.append(f"  {name}: {doc}")
            for option, kind, default in method_options(name):
                lines.append(f"      {option}: {kind} = {default!r}")
    lines.append(
        "Need a model and task data: give `run:` (a single-task run) instead of base_model and"
    )
    lines.append("models, and optionally `data: {split, batches, batch_size}`:")
    for name, cls in DATA_METHODS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
        lines.append(f"  {name} ({cls.__name__}, data.split default {DATA_SPLITS[name]}): {doc}")
        for option, kind, default in method_options(name):
            lines.append(f"      {option}: {kind} = {default!r}")
    return "\n".join(lines)


@click.command(
    "merge",
    epilog=_methods_help(),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path), help="Output folder (created)."
)
@click.option("--overwrite", is_flag=True, help="Replace the output folder if it exists.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar over tensors.")
def merge_command(config: Path, out: Path, overwrite: bool, progress: bool) -> None:
    """Merge the fine-tuned checkpoints described in CONFIG (YAML) into the folder OUT.

    Per-tensor methods stream tensors one at a time (memory stays at a few tensors); whole-model
    methods (tall_masks, consensus) load every selected tensor of all models; data-based ones
    (fisher, regmean, adamerging) also read a few batches of each task of the `run:`. The output is
    sharded safetensors plus merge.json recording the method and every option (TALL's packed
    masks go to merge_tensors.safetensors).
    """
    from polytask.merging import merge_checkpoints, merge_model_checkpoints
    from polytask.merging.model import ModelMerge

    cfg = load_merge_config(config)
    method = build_merge_method(cfg, where=str(config))
    record: dict[str, Any] = {"name": cfg.method, "seed": cfg.seed, "config": str(config)}
    common: dict[str, Any] = dict(
        include=cfg.filters.include,
        exclude=cfg.filters.exclude,
        syntax=cfg.filters.syntax,
        excluded=cfg.excluded,
        dtype=cfg.torch_dtype,
        max_shard_bytes=cfg.shard_size,
        overwrite=overwrite,
        trust_pickle=cfg.trust_pickle,
        record=record,
    )
    assert cfg.base_model is not None and cfg.models is not None
    paths = [m.path for m in cfg.models]
    if isinstance(method, ModelMerge):
        data = None
        if method.needs and cfg.run is not None:
            from polytask.config.merge_data import merge_inputs

            batches, size = cfg.data.batches, cfg.data.batch_size
            data, used = merge_inputs(
                Path(cfg.run), method, cfg.data_split, batches, size, str(config)
            )
            record["data"] = used
        merge_model_checkpoints(method, cfg.base_model, paths, out, data=data, **common)
    else:
        merge_checkpoints(method, cfg.base_model, paths, out, progress=progress, **common)
    click.echo(f"merged {len(cfg.models)} models with {cfg.method} into {out}")
