"""The ``polytask`` command: a click group whose subcommands live in sibling modules.

Every command follows one convention: stdout carries only the paths of what it wrote (a report,
a merged folder, an affinity folder), one per line, so ``$(polytask ...)`` captures them; the
summary for a reader, progress bars and errors go to stderr. Bad input (a
:class:`~polytask._core.PolytaskError` or a wrong option) is one line ``error: ...`` on stderr
and exit code 2, without a traceback; Ctrl-C is one line and exit code 130.

Subcommand modules import only click and :mod:`polytask.config` at module level, and build help
that comes from the schemas only when it is shown, so ``polytask --help`` and
``polytask <command> --help`` import no torch.
"""

from __future__ import annotations

import sys

import click

from polytask import __version__
from polytask._core import PolytaskError
from polytask.cli.options import CONTEXT

INTERRUPTED = 130
#: raised by click >= 8.2 for a group called without a command
NO_ARGS: type[Exception] | tuple[()] = getattr(click.exceptions, "NoArgsIsHelpError", ())


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="polytask")
def cli() -> None:
    """polytask: train one model on many tasks, or merge per-task models, and evaluate both."""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI; user errors become one line on stderr and exit code 2."""
    _register()
    try:
        code = cli.main(args=argv, prog_name="polytask", standalone_mode=False)
    except PolytaskError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:  # Ctrl-C outside a command's own handling
        click.echo("interrupted", err=True)
        return INTERRUPTED
    except NO_ARGS:  # plain `polytask`: the help, as -h prints it
        click.echo(cli.get_help(click.Context(cli, info_name="polytask", **cli.context_settings)))
        return 0
    except click.ClickException as exc:
        click.echo(f"error: {_one_line(exc)}", err=True)
        return 2
    return code if isinstance(code, int) else 0  # an Exit (e.g. --help, Ctrl-C in train)


def _one_line(exc: click.ClickException) -> str:
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see {ctx.command_path} -h)" if ctx is not None else message


def _register() -> None:
    """Attach the subcommands (imported here so ``--help`` stays fast)."""
    # Each subcommand module adds itself below with one line.
    from polytask.cli.train import train_command

    cli.add_command(train_command)
    from polytask.cli.evaluate import eval_command

    cli.add_command(eval_command)
    from polytask.cli.merge import merge_command

    cli.add_command(merge_command)
    from polytask.cli.affinity import affinity_command

    cli.add_command(affinity_command)
    from polytask.cli.sweep import sweep_command

    cli.add_command(sweep_command)


if __name__ == "__main__":
    sys.exit(main())
