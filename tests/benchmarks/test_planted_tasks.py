"""The planted-tasks generator (benchmarks/planted_tasks.py) and its committed small fixture."""

from __future__ import annotations

import gzip
import json
import shlex
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from polytask.tasks.data import random_split
from tests.conftest import REPO, SHARED_DATA

sys.path.insert(0, str(REPO / "benchmarks"))
from planted_tasks import (
    PlantSpec,
    intercepts,
    main,
    observed_counts,
    plant,
    rdkit_version,
    roc_auc,
    write_csv,
)

FIXTURE = REPO / "tests" / "data" / "planted_small.csv"
META = json.loads((REPO / "tests" / "data" / "planted_small.json").read_text())
SPEC = PlantSpec(**META["spec"])
needs_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason="shared data not available")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return pd.read_csv(FIXTURE)


def test_fixture_shape_and_names(frame):
    assert frame.shape == (400, 25) and SPEC.molecules == 400 and SPEC.tasks == 24
    assert list(frame.columns) == ["smiles", *(f"assay_{j:03d}" for j in range(24))]
    assert frame["smiles"].is_unique
    values = frame.iloc[:, 1:].to_numpy()
    assert set(np.unique(values[~np.isnan(values)])) == {0.0, 1.0}


def test_fixture_missing_fraction_and_counts_match_the_sidecar(frame):
    y = frame.iloc[:, 1:].to_numpy()
    seen = ~np.isnan(y)
    # the mean observed fraction is set by bisection to 1 - missing = 0.3 of 9,600 cells
    assert abs(1 - seen.mean() - SPEC.missing) < 0.005
    assert 1 - seen.mean() == pytest.approx(META["missing_fraction"], abs=1e-6)
    assert seen.sum(axis=0).tolist() == META["per_task"]["labelled"]
    assert np.nansum(y, axis=0).astype(int).tolist() == META["per_task"]["positives"]
    assert META["rows_without_labels"] == int((~seen.any(axis=1)).sum())


def test_fixture_positives_and_rates_in_the_planted_range(frame):
    y = frame.iloc[:, 1:].to_numpy()
    pos = np.nansum(y, axis=0)
    assert pos.min() >= SPEC.min_positives == 5
    # target rates: evenly spaced quantiles of a log-uniform law on [rate_min, rate_max]
    lo, hi = np.log(SPEC.rate_min), np.log(SPEC.rate_max)
    expected = np.exp(lo + (hi - lo) * (np.arange(24) + 0.5) / 24)
    np.testing.assert_allclose(sorted(META["per_task"]["target_rate"]), expected, atol=1e-6)
    # sparse tasks exist: some observe few molecules, some most of them
    counts = (~np.isnan(y)).sum(axis=0)
    assert counts.min() < 0.1 * 400 < 0.6 * 400 < counts.max()


@needs_data
@pytest.mark.needs("rdkit")
def test_regenerating_with_the_documented_command_gives_the_same_bytes(tmp_path):
    argv = shlex.split(META["command"])[2:]  # drop "python benchmarks/planted_tasks.py"
    out = tmp_path / "again.csv"
    argv[argv.index("--out") + 1] = str(out)
    assert main([*argv, "--no-cache"]) == 0
    if META["rdkit"] == rdkit_version():  # canonical SMILES and ECFP depend on RDKit
        assert out.read_bytes() == FIXTURE.read_bytes()
    again = json.loads(out.with_suffix(".json").read_text())
    assert again.pop("command").endswith(f"--out {out}")
    expected = {k: v for k, v in META.items() if k != "command"}
    if META["rdkit"] == rdkit_version():
        assert again == expected


@needs_data
@pytest.mark.needs("rdkit", "sklearn")
def test_planted_optimum_is_the_test_auc_of_the_true_logits():
    from sklearn.metrics import roc_auc_score

    p = plant(SPEC, cache=None)
    test = random_split(len(p.smiles), (0.8, 0.1, 0.1), SPEC.split_seed)["test"]
    aucs = []
    for j in range(SPEC.tasks):
        rows = test[~np.isnan(p.labels[test, j])]
        y = p.labels[rows, j]
        ref = roc_auc_score(y, p.logits[rows, j]) if 0 < y.sum() < len(y) else None
        assert p.summary["per_task"]["test_roc_auc"][j] == pytest.approx(ref, abs=1e-6)
        aucs += [ref] if ref is not None else []
    assert p.summary["planted_optimum"]["mean_test_roc_auc"] == pytest.approx(np.mean(aucs))
    # a second plant with the same spec is identical; another seed is not
    q = plant(SPEC, cache=None)
    np.testing.assert_array_equal(p.logits, q.logits)
    np.testing.assert_array_equal(np.isnan(p.labels), np.isnan(q.labels))
    other = plant(replace(SPEC, seed=1), cache=None)
    assert other.smiles != p.smiles and not np.array_equal(other.logits, p.logits)


def test_roc_auc_by_hand():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1.0])) == 0.75
    # ties count one half: pairs (pos 1 vs neg 1) = 1/2, (pos 2 vs neg 1) = 1
    assert roc_auc(np.array([1.0, 1.0, 2.0]), np.array([0, 1, 1.0])) == 0.75
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1.0])))  # one class


def test_intercepts_hit_the_target_rates():
    z = np.random.default_rng(0).standard_normal((5000, 3)).astype(np.float32)
    rates = np.array([0.01, 0.05, 0.2])
    b = intercepts(z, rates, 0.5)
    mean = (1 / (1 + np.exp(-(z / 0.5 + b.astype(np.float32))))).mean(axis=0)
    np.testing.assert_allclose(mean, rates, atol=2e-6)
    assert (np.diff(b) > 0).all()  # a higher rate needs a higher intercept


def test_observed_counts_keep_the_positive_floor_and_the_missing_fraction():
    rng = np.random.default_rng(1)
    y = (rng.random((1000, 10)) < 0.05).astype(np.float32)
    spec = PlantSpec(tasks=10, min_positives=3, missing=0.7)
    perms, n = observed_counts(y, spec, np.random.default_rng(2))
    for j in range(10):
        assert y[perms[j, : n[j]], j].sum() >= 3
    assert n.sum() == pytest.approx(0.3 * 10_000, rel=0.01)
    with pytest.raises(SystemExit, match="fewer than --min-positives 60"):
        observed_counts(y, PlantSpec(tasks=10, min_positives=60), np.random.default_rng(2))


def test_write_csv_empty_cells_and_deterministic_gzip(tmp_path):
    labels = np.array([[1, np.nan], [np.nan, np.nan], [0, 1]], dtype=np.float32)
    write_csv(tmp_path / "t.csv", ["C", "CC", "O"], ["a", "b"], labels)
    assert (tmp_path / "t.csv").read_bytes() == b"smiles,a,b\nC,1,\nCC,,\nO,0,1\n"
    write_csv(tmp_path / "t.csv.gz", ["C", "CC", "O"], ["a", "b"], labels)
    first = (tmp_path / "t.csv.gz").read_bytes()
    write_csv(tmp_path / "t.csv.gz", ["C", "CC", "O"], ["a", "b"], labels)
    assert (tmp_path / "t.csv.gz").read_bytes() == first
    assert gzip.decompress(first) == (tmp_path / "t.csv").read_bytes()
