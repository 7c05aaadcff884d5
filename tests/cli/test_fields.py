"""Reading a dataclass's fields from source gives what :func:`dataclasses.fields` gives."""

from __future__ import annotations

import dataclasses
import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from polytask.cli.fields import class_summary, dataclass_fields, find_class

FILES = {
    "__init__.py": "from .methods import Child as Exported\n",
    "base.py": """
        from dataclasses import dataclass, field
        from typing import ClassVar, Literal

        @dataclass(frozen=True)
        class Root:
            alpha: float = 1.0
            mode: Literal["a", "b"] = "a"
            hidden: int = field(default=3, init=False)

        class Mixin:  # not a dataclass: its annotations are not fields
            note: str = "x"
    """,
    "methods.py": """
        from __future__ import annotations

        import dataclasses
        from abc import ABC
        from typing import ClassVar

        from .base import Mixin, Root as Renamed

        @dataclasses.dataclass(frozen=True)
        class Child(Renamed, Mixin, ABC):
            '''The ``child`` method: one line.

            More text.
            '''

            kind: ClassVar[str] = "child"
            beta: tuple[float, ...] | None = None
            alpha: float = 0.5          # redefined: keeps its first place
            names: list[str] = dataclasses.field(default_factory=list)
            eps: float = 1e-8
            required: int = dataclasses.field(default=-2)
    """,
}


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"fieldspkg_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / name
    root.mkdir()
    for file, text in FILES.items():
        (root / file).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_fields_match_the_imported_dataclass(package: str) -> None:
    cls = find_class(package, "Exported")
    assert (cls.module, cls.node.name) == (f"{package}.methods", "Child")
    assert f"{package}.methods" not in sys.modules  # read, not imported
    got = [(f.name, f.type, f.default) for f in dataclass_fields(cls)]
    assert got == [
        ("alpha", "float", "0.5"),
        ("mode", "Literal['a', 'b']", "'a'"),
        ("beta", "tuple[float, ...] | None", "None"),
        ("names", "list[str]", "list()"),
        ("eps", "float", "1e-08"),
        ("required", "int", "-2"),
    ]
    imported = importlib.import_module(package).Exported
    real = [f for f in dataclasses.fields(imported) if f.init]
    assert [f.name for f in real] == [name for name, _, _ in got]
    assert [repr(f.default) for f in real if f.default is not dataclasses.MISSING] == [
        d for name, _, d in got if name != "names"
    ]
    assert class_summary(cls) == "The child method: one line."


def test_unknown_class_is_a_lookup_error(package: str) -> None:
    with pytest.raises(LookupError, match="Nope"):
        find_class(package, "Nope")
    with pytest.raises(LookupError):  # ClassVar comes from typing: not followed
        find_class(f"{package}.base", "ClassVar")
