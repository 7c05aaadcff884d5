"""``polytask merge CONFIG.yaml --out DIR``: stream-merge fine-tuned checkpoints into one model."""

from __future__ import annotations

from pathlib import Path

import click

from polytask.config.merge import (
    MERGE_METHODS,
    build_merge_method,
    load_merge_config,
    method_options,
)

__all__ = ["merge_command"]


def _methods_help() -> str:
    lines = ["\b", "Methods and their options (option: type = default):"]
    for name, cls in MERGE_METHODS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
        lines.append(f"  {name}: {doc}")
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

    Tensors are streamed one at a time (memory stays at a few tensors); the output is sharded
    safetensors plus merge.json recording the method and every option.
    """
    from polytask.merging import merge_checkpoints

    cfg = load_merge_config(config)
    method = build_merge_method(cfg, where=str(config))
    merge_checkpoints(
        method,
        cfg.base_model,
        [m.path for m in cfg.models],
        out,
        include=cfg.filters.include,
        exclude=cfg.filters.exclude,
        syntax=cfg.filters.syntax,
        excluded=cfg.excluded,
        dtype=cfg.torch_dtype,
        max_shard_bytes=cfg.shard_size,
        overwrite=overwrite,
        trust_pickle=cfg.trust_pickle,
        progress=progress,
        record={"name": cfg.method, "seed": cfg.seed, "config": str(config)},
    )
    click.echo(f"merged {len(cfg.models)} models with {cfg.method} into {out}")
