"""The ``polytask`` command: a click group whose subcommands live in sibling modules.

Bad input raises :class:`~polytask._core.PolytaskError`; :func:`main` prints its one line to
stderr and exits with code 2, without a traceback.
"""

from __future__ import annotations

import sys

import click

from polytask import __version__
from polytask._core import PolytaskError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="polytask")
def cli() -> None:
    """polytask: train one model on many tasks, or merge per-task models, and evaluate both."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line on stderr and exit code 2."""
    _register()
    try:
        cli.main(args=argv, prog_name="polytask", standalone_mode=False)
    except PolytaskError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    return 0


def _register() -> None:
    """Attach the subcommands (imported here so ``--help`` stays fast)."""
    # Each subcommand module adds itself below with one line.
    from polytask.cli.train import eval_command, train_command

    cli.add_command(train_command)
    cli.add_command(eval_command)
    from polytask.cli.merge import merge_command

    cli.add_command(merge_command)
    from polytask.cli.affinity import affinity_command

    cli.add_command(affinity_command)
    from polytask.cli.sweep import sweep_command

    cli.add_command(sweep_command)


if __name__ == "__main__":
    sys.exit(main())
