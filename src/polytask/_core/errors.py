"""The one exception type users see for bad input.

Every error caused by what a user gave polytask (a config key, a file, a tensor) is raised as a
:class:`PolytaskError` with a one-line message that says what is wrong and where. The CLI prints
that line and exits with code 2; no traceback.
"""

from __future__ import annotations


class PolytaskError(Exception):
    """Bad input: a one-line, user-facing message naming what is wrong and where."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class NonFiniteLossError(PolytaskError):
    """A task loss (or gradient) became NaN or infinite; training stops, checkpoints stay intact."""
