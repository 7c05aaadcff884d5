"""The options of a dataclass read from its source, without importing its module.

``polytask merge --help`` lists every merge method's options (name, type, default). Importing the
method classes would import torch; instead the class is found by following the package's
``from ... import`` lines (:func:`find_class`), and its fields are read from the class body and
from those of its base classes in the same package (:func:`dataclass_fields`), as
:func:`dataclasses.fields` would list them: base fields first, a redefined field in its first
place, ``ClassVar`` and ``field(init=False)`` left out.
"""

from __future__ import annotations

import ast
import functools
import importlib.machinery
import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SourceClass", "SourceField", "class_summary", "dataclass_fields", "find_class"]


@dataclass(frozen=True)
class SourceField:
    """One ``__init__`` field: its name, its annotation as written, its default as text."""

    name: str
    type: str
    default: str | None  # repr of a literal default, else the expression; None: required


@dataclass(frozen=True)
class SourceClass:
    """A class definition and the module it is defined in."""

    module: str
    node: ast.ClassDef


def module_path(module: str) -> Path:
    """The source file of ``module``, found without importing it or its parent packages."""
    top, *parts = module.split(".")
    spec = importlib.util.find_spec(top)
    for i in range(len(parts)):
        locations = spec.submodule_search_locations if spec is not None else None
        if locations is None:
            break
        spec = importlib.machinery.PathFinder.find_spec(".".join([top, *parts[: i + 1]]), locations)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise LookupError(f"no Python source for module {module}")
    return Path(spec.origin)


@functools.cache
def parse_module(module: str) -> ast.Module:
    """The syntax tree of ``module`` (read once)."""
    path = module_path(module)
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_package(module: str) -> bool:
    return module_path(module).name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def find_class(module: str, name: str) -> SourceClass:
    """Where the class ``name`` seen in ``module`` is defined, following ``from x import y``
    within ``module``'s top-level package; LookupError when it comes from elsewhere."""
    top = module.split(".")[0]
    for node in parse_module(module).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return SourceClass(module, node)
    for node in parse_module(module).body:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                if (alias.asname or alias.name) == name and source.split(".")[0] == top:
                    return find_class(source, alias.name)
    raise LookupError(f"class {name} not found in {module}")


def _is_dataclass(node: ast.ClassDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if ast.unparse(target) in ("dataclass", "dataclasses.dataclass"):
            return True
    return False


def _base(cls: SourceClass, expr: ast.expr) -> SourceClass | None:
    """The base class ``expr`` when it is defined in the same top-level package, else None."""
    if not isinstance(expr, ast.Name):
        return None
    try:
        return find_class(cls.module, expr.id)
    except LookupError:  # a builtin, or a class from outside the package (e.g. Protocol)
        return None


def _text(node: ast.expr) -> str:
    try:
        return repr(ast.literal_eval(node))
    except ValueError:
        return ast.unparse(node)


def _field(stmt: ast.AnnAssign) -> SourceField | None:
    """The field ``stmt`` declares; None for ``ClassVar``, ``InitVar``, ``KW_ONLY``, ``init=False``."""
    assert isinstance(stmt.target, ast.Name)
    annotation = stmt.annotation
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = ast.parse(annotation.value, mode="eval").body
    type_text = ast.unparse(annotation)
    if type_text.split("[")[0].rpartition(".")[2] in ("ClassVar", "InitVar", "KW_ONLY"):
        return None
    value = stmt.value
    if isinstance(value, ast.Call) and ast.unparse(value.func) in ("field", "dataclasses.field"):
        options = {k.arg: k.value for k in value.keywords if k.arg is not None}
        init = options.get("init")
        if isinstance(init, ast.Constant) and init.value is False:
            return None
        if "default" in options:
            return SourceField(stmt.target.id, type_text, _text(options["default"]))
        factory = options.get("default_factory")
        default = None if factory is None else f"{ast.unparse(factory)}()"
        return SourceField(stmt.target.id, type_text, default)
    return SourceField(stmt.target.id, type_text, None if value is None else _text(value))


def dataclass_fields(cls: SourceClass) -> list[SourceField]:
    """The ``__init__`` fields of the dataclass ``cls``, in :func:`dataclasses.fields` order."""
    fields: dict[str, SourceField] = {}
    for expr in cls.node.bases:
        base = _base(cls, expr)
        if base is not None:
            for f in dataclass_fields(base):
                fields[f.name] = f
    if _is_dataclass(cls.node):
        for stmt in cls.node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                found = _field(stmt)
                if found is not None:
                    fields[found.name] = found
                else:
                    fields.pop(stmt.target.id, None)
    return list(fields.values())


def class_summary(cls: SourceClass) -> str:
    """The first line of the class docstring (without ``rst`` literal quotes)."""
    doc = ast.get_docstring(cls.node) or ""
    return (doc.strip().splitlines() or [""])[0].replace("``", "")
