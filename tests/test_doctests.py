"""Every ``>>>`` example in ``src/polytask`` runs and prints what it shows.

The modules are found by walking ``src/polytask/**/*.py`` for ``>>>``; each is one case, named by
module, run by :mod:`doctest` over the module, class and function docstrings that the module
defines (``ELLIPSIS | NORMALIZE_WHITESPACE``). A module whose examples need an optional extra
(RDKit for ``chem``, scikit-learn for ``affinity``, ...) is skipped with the extra's name when that
package is missing, whether the import happens when the module loads or inside an example.

Checked by blocking each optional package (``sys.modules[name] = None`` before collection, see
``tests/conftest.py``): ``POLYTASK_TEST_BLOCK=rdkit python -m pytest tests/test_doctests.py``
skips ``polytask.tasks.data.descriptors`` and passes every other case.
"""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

from polytask._core import PolytaskError
from tests.conftest import OPTIONAL, missing_optional

SRC = Path(__file__).resolve().parents[1] / "src"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted((SRC / "polytask").rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


MODULES = _modules_with_examples()


def test_the_walk_finds_the_modules_with_examples() -> None:
    # a handful known to have examples, from several packages: the walk is no empty list
    for name in (
        "polytask.eval.summary",
        "polytask.merging.model.tall",
        "polytask.tasks.data.descriptors",
        "polytask.models.moe",
    ):
        assert name in MODULES
    assert len(MODULES) >= 20


# what polytask._core.optional.require raises for a missing extra
_NOT_INSTALLED = re.compile(r"^(\S+) is needed here but is not installed: pip install '(.+?)'")


class _Runner(doctest.DocTestRunner):
    """A runner that notes an example stopped by a missing optional package."""

    missing: str | None = None

    def report_unexpected_exception(self, out, test, example, exc_info):  # type: ignore[no-untyped-def]
        exc = exc_info[1]
        top = (getattr(exc, "name", None) or "").split(".")[0]
        if isinstance(exc, ModuleNotFoundError) and top in OPTIONAL:
            self.missing = f"needs {top}: pip install 'polytask[{OPTIONAL[top]}]'"
        elif isinstance(exc, PolytaskError) and (found := _NOT_INSTALLED.match(str(exc))):
            self.missing = f"needs {found[1]}: pip install '{found[2]}'"
        super().report_unexpected_exception(out, test, example, exc_info)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    try:
        # import_module, not attribute access: a package may re-export a function that has its
        # submodule's name (polytask.tasks.data.descriptors)
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing_optional(exc)
        raise
    tests = doctest.DocTestFinder().find(module, name)
    runner = _Runner(optionflags=FLAGS)
    report: list[str] = []
    for test in sorted(tests, key=lambda t: t.name):
        runner.run(test, out=report.append)
    if runner.missing is not None:
        pytest.skip(f"{name}: {runner.missing}")
    assert runner.failures == 0, "".join(report)
    # every `>>>` line of the file ran: none sits in a comment or a docstring doctest never sees
    path = SRC.joinpath(*name.split(".")).with_suffix(".py")
    if not path.is_file():
        path = path.with_suffix("") / "__init__.py"
    prompts = sum(line.lstrip().startswith(">>>") for line in path.read_text().splitlines())
    assert runner.tries == prompts, f"{name}: {runner.tries} examples ran, {prompts} '>>>' lines"
