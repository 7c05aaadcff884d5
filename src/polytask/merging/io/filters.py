"""Which tensors take part in a merge: include/exclude patterns over tensor names.

``KeyFilter(include=("encoder.*",), exclude=("*classifier*",))`` selects a key when it matches
at least one include pattern (all keys when ``include`` is empty) and no exclude pattern.
Patterns are shell globs (``fnmatch``, ``*`` also crosses dots) or, with ``syntax="regex"``,
Python regular expressions matched with ``re.search``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Literal

from polytask._core import PolytaskError

__all__ = ["KeyFilter"]


@dataclass(frozen=True)
class KeyFilter:
    """Include/exclude tensor names by glob (default) or regular expression."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    syntax: Literal["glob", "regex"] = "glob"

    def __post_init__(self) -> None:
        if self.syntax not in ("glob", "regex"):
            raise PolytaskError(f"filter syntax must be 'glob' or 'regex', got {self.syntax!r}")
        if self.syntax == "regex":
            for pattern in (*self.include, *self.exclude):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise PolytaskError(f"invalid regular expression {pattern!r}: {exc}") from None

    def _match(self, key: str, pattern: str) -> bool:
        if self.syntax == "regex":
            return re.search(pattern, key) is not None
        return fnmatch.fnmatchcase(key, pattern)

    def __call__(self, key: str) -> bool:
        """True when ``key`` is selected."""
        if self.include and not any(self._match(key, p) for p in self.include):
            return False
        return not any(self._match(key, p) for p in self.exclude)
