"""``polytask merge CONFIG.yaml --out DIR``: stream-merge fine-tuned checkpoints into one model."""

from __future__ import annotations

from pathlib import Path

import click

from polytask.config.merge import (
    DATA_METHODS,
    DATA_SPLITS,
    MERGE_METHODS,
    MODEL_METHODS,
    method_class,
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
        for name in registry:
            cls = method_class(name)
            doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
            lines.append(f"  {name}: {doc}")
            for option, kind, default in method_options(name):
                lines.append(f"      {option}: {kind} = {default!r}")
    lines.append(
        "Need a model and task data: give `run:` (a single-task run) instead of base_model and"
    )
    lines.append("models, and optionally `data: {split, batches, batch_size}`:")
    for name in DATA_METHODS:
        cls = method_class(name)
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
    from polytask.jobs.merge import run_merge

    result = run_merge(config, out, overwrite=overwrite, progress=progress)
    click.echo(f"merged {result.models} models with {result.method} into {result.out}")
