"""Shared results files: each benchmark owns one marked section of a markdown file.

``write_section(path, key, text)`` replaces the text between ``<!-- begin KEY -->`` and
``<!-- end KEY -->`` (appending the section when it is not there yet) and writes the file
atomically, so several benchmarks can fill one results page without clobbering each other.
"""

from __future__ import annotations

from pathlib import Path

from polytask._core import write_text


def write_section(path: Path, key: str, text: str, title: str = "") -> None:
    begin, end = f"<!-- begin {key} -->", f"<!-- end {key} -->"
    old = path.read_text() if path.exists() else (f"# {title}\n\n" if title else "")
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        _, tail = rest.split(end, 1)
        new = head + block + tail
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    write_text(path, new)
