"""``polytask merge CONFIG --out DIR``: merge fine-tuned checkpoints, print the merged folder.

``--help`` lists every method with its options, read from the registries of
:mod:`polytask.config.merge` and the methods' source (:mod:`polytask.cli.help_text`): it imports
neither torch nor a method.
"""

from __future__ import annotations

from pathlib import Path

import click

from polytask.cli.help_text import merge_epilog
from polytask.cli.options import (
    Command,
    config_argument,
    out_option,
    overwrite_option,
    progress_option,
)

__all__ = ["merge_command"]


@click.command(
    "merge",
    cls=Command,
    short_help="Merge fine-tuned checkpoints into one model.",
    epilog_lines=merge_epilog,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)
@config_argument()
@out_option("Folder for the merged model (sharded safetensors) and merge.json.")
@overwrite_option
@progress_option
def merge_command(config: Path, out: Path, overwrite: bool, progress: bool) -> None:
    """Merge the fine-tuned checkpoints that CONFIG (YAML) names into the folder OUT.

    Per-tensor methods stream tensors one at a time (memory stays at a few tensors); whole-model
    methods (tall_masks, consensus) load every selected tensor of all models; data-based ones
    (fisher, regmean, adamerging) also read a few batches of each task of the `run:`. The output is
    sharded safetensors plus merge.json recording the method and every option (TALL's packed
    masks go to merge_tensors.safetensors).
    """
    from polytask.jobs.merge import run_merge

    result = run_merge(config, out, overwrite=overwrite, progress=progress)
    click.echo(f"merged {result.models} models with {result.method}", err=True)
    click.echo(result.out)
