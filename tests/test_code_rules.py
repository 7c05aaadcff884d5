"""Code rules for ``src/polytask``, read from the source with ``ast``.

Each rule is its own test and names the offenders in its message:

* no function or method longer than 60 lines (``def`` line to the end of its body);
* no module longer than 400 lines;
* no private name (``_x``, not dunder) imported from another module, nor read as an
  attribute of another imported polytask module;
* no import circle between polytask modules (module-level imports, ``if TYPE_CHECKING:``
  blocks excluded);
* fewer than 30 ``Any`` in the annotations of ``config``, ``build`` and ``jobs``;
* ``polytask.config`` imports no model, training, builder, job or data code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "polytask"

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
MAX_ANY = 30
ANY_PACKAGES = ("polytask.config", "polytask.build", "polytask.jobs")
CONFIG_FORBIDDEN = (
    "polytask.models",
    "polytask.train",
    "polytask.build",
    "polytask.jobs",
    "polytask.tasks.data",
    "polytask.tasks.ssl",
)


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @property
    def package(self) -> str:
        """The package relative imports resolve against."""
        return self.name if self.is_package else self.name.rpartition(".")[0]

    @property
    def where(self) -> str:
        return str(self.path.relative_to(SRC.parent))


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        text = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        found[name] = Module(name, path, ast.parse(text, str(path)), len(text.splitlines()))
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    """The module an ``ImportFrom`` reads from, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    base = module.package.split(".")
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports executed when the module is imported: not in functions, classes'
    methods or ``if TYPE_CHECKING:`` blocks."""
    for stmt in body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            yield stmt
        elif isinstance(stmt, ast.If):
            if not _is_type_checking(stmt.test):
                yield from _module_level_imports(stmt.body)
            yield from _module_level_imports(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody):
                yield from _module_level_imports(block)
            for handler in stmt.handlers:
                yield from _module_level_imports(handler.body)
        elif isinstance(stmt, ast.With | ast.ClassDef):
            yield from _module_level_imports(stmt.body)


def _targets(module: Module, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The polytask modules an import statement executes (a submodule when the
    imported name is one, else the module named in the statement)."""
    known = modules()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
        return
    source = _absolute(module, node)
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in known:
            yield sub
        elif source in known:
            yield source


def _all_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


# --- 1. function length ------------------------------------------------------------------


def test_no_function_longer_than_60_lines() -> None:
    long: list[str] = []
    for module in modules().values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{module.where}:{node.lineno} {node.name} ({length} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


# --- 2. module length --------------------------------------------------------------------


def test_no_module_longer_than_400_lines() -> None:
    long = [
        f"{module.where} ({module.lines} lines)"
        for module in modules().values()
        if module.lines > MAX_MODULE_LINES
    ]
    assert not long, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)


# --- 3. private names --------------------------------------------------------------------


def _private_from_imports(module: Module) -> Iterator[str]:
    known = modules()
    for node in _all_imports(module.tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _absolute(module, node)
        for alias in node.names:
            if not _is_private(alias.name):
                continue
            sub = f"{source}.{alias.name}"
            # a private submodule may be imported from inside its own package
            if sub in known and (module.name + ".").startswith(source + "."):
                continue
            yield f"{module.where}:{node.lineno} from {source} import {alias.name}"


def _module_aliases(module: Module) -> dict[str, str]:
    """Local names bound to other polytask modules (``import a.b as m``, ``from a import b``)."""
    known = modules()
    aliases: dict[str, str] = {}
    for node in _all_imports(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in known:
                    aliases[alias.asname] = alias.name
        else:
            source = _absolute(module, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:
                    aliases[alias.asname or alias.name] = sub
    return {local: target for local, target in aliases.items() if target != module.name}


def _private_attributes(module: Module) -> Iterator[str]:
    aliases = _module_aliases(module)
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        value = node.value
        dotted: list[str] = []
        while isinstance(value, ast.Attribute):
            dotted.insert(0, value.attr)
            value = value.value
        if not isinstance(value, ast.Name):
            continue
        if value.id in aliases:
            target = ".".join([aliases[value.id], *dotted])
        elif value.id == "polytask":
            target = ".".join(["polytask", *dotted])
        else:
            continue
        if target in modules() and target != module.name:
            yield f"{module.where}:{node.lineno} {target}.{node.attr}"


def test_no_private_name_imported_from_another_module() -> None:
    found: list[str] = []
    for module in modules().values():
        found.extend(_private_from_imports(module))
        found.extend(_private_attributes(module))
    assert not found, "private names used across modules:\n" + "\n".join(found)


# --- 4. import circles -------------------------------------------------------------------


def _import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in modules().values():
        targets = {
            target
            for node in _module_level_imports(module.tree.body)
            for target in _targets(module, node)
        }
        graph[module.name] = targets - {module.name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, for the message."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return component


def test_no_import_circle() -> None:
    graph = _import_graph()
    circles = [" -> ".join(_one_cycle(graph, c)) for c in _circles(graph)]
    assert not circles, "import circles between polytask modules:\n" + "\n".join(circles)


def test_circle_finder_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _one_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert _circles({"a": {"b"}, "b": set()}) == []


# --- 5. Any ------------------------------------------------------------------------------


def _annotations(tree: ast.AST) -> Iterator[ast.expr]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            every += [a for a in (args.vararg, args.kwarg) if a is not None]
            yield from (a.annotation for a in every if a.annotation is not None)
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _any_count(annotation: ast.expr) -> int:
    count = 0
    for node in ast.walk(annotation):
        named = node.id if isinstance(node, ast.Name) else None
        if named == "Any" or (isinstance(node, ast.Attribute) and node.attr == "Any"):
            count += 1
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                count += _any_count(ast.parse(node.value, mode="eval").body)
            except SyntaxError:
                continue
    return count


def test_few_any_annotations_in_config_build_jobs() -> None:
    per_module: dict[str, int] = {}
    for module in modules().values():
        if not module.name.startswith(ANY_PACKAGES):
            continue
        count = sum(_any_count(a) for a in _annotations(module.tree))
        if count:
            per_module[module.where] = count
    total = sum(per_module.values())
    listing = "\n".join(f"{where}: {n}" for where, n in sorted(per_module.items()))
    assert total < MAX_ANY, f"{total} Any annotations (limit {MAX_ANY}):\n{listing}"


# --- 6. config stays pure ----------------------------------------------------------------


def test_config_imports_no_builder_model_or_data_code() -> None:
    found: list[str] = []
    for module in modules().values():
        if not module.name.startswith("polytask.config"):
            continue
        for node in _all_imports(module.tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [_absolute(module, node)]
            )
            for name in names:
                if any(name == f or name.startswith(f + ".") for f in CONFIG_FORBIDDEN):
                    found.append(f"{module.where}:{node.lineno} imports {name}")
    assert not found, "polytask.config imports forbidden code:\n" + "\n".join(found)
