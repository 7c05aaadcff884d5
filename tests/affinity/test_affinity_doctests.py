"""The examples in the affinity docstrings run and give the values they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "polytask.affinity.gradient",
    "polytask.affinity.grouping.score",
    "polytask.affinity.datamaps",
    "polytask.affinity.sources.transfer",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
