"""Markdown tables as lines (GitHub style, as in ``docs/results``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from polytask._core import PolytaskError

__all__ = ["markdown_row", "markdown_table"]

_ALIGN = {"": "---", "left": ":---", "right": "---:", "center": ":---:"}


def markdown_row(cells: Sequence[str]) -> str:
    r"""``| a | b |``: cells joined by ``" | "`` (an empty cell gives ``|  |``).

    A ``|`` inside a cell is escaped as ``\|`` (unless it already is); a newline is refused.
    """
    for cell in cells:
        if not isinstance(cell, str):
            raise PolytaskError(f"table cells must be text, got {type(cell).__name__}: {cell!r}")
        if "\n" in cell or "\r" in cell:
            raise PolytaskError(f"a table cell holds a line break: {cell!r}")
    return "| " + " | ".join(re.sub(r"(?<!\\)\|", r"\\|", c) for c in cells) + " |"


def markdown_table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    align: Sequence[str] | None = None,
) -> list[str]:
    """A GitHub markdown table as lines: header, separator, one line per row.

    The separator is ``|---|---|`` as in ``docs/results``; ``align`` gives one of ``""``,
    ``"left"``, ``"right"``, ``"center"`` per column (``:---``, ``---:``, ``:---:``). Rows must
    have as many cells as the header; cells are text, written by :func:`markdown_row`.
    Join the lines with ``"\\n"`` to get the table's text.
    """
    if not header:
        raise PolytaskError("a markdown table needs at least one column")
    marks = [""] * len(header) if align is None else list(align)
    if len(marks) != len(header) or any(m not in _ALIGN for m in marks):
        raise PolytaskError(
            f"align needs one of {sorted(_ALIGN)} per column ({len(header)}), got {marks}"
        )
    lines = [markdown_row(header), "|" + "".join(f"{_ALIGN[m]}|" for m in marks)]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise PolytaskError(f"row {i} has {len(row)} cells, the header {len(header)}")
        lines.append(markdown_row(row))
    return lines
