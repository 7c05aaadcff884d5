"""Planted sparse multi-task binary data on real molecules, with its known optimum.

Molecules: every SMILES column of ``shared/data/moleculenet`` (tox21, BBBP, bace, clintox,
delaney, freesolv, lipo, qm8; with ``--qm9`` also QM9 from the ``qm9pack`` package),
canonicalised with RDKit, unparsable ones dropped, duplicates removed. A seeded permutation fixes
their order; ``--molecules N`` keeps the first N of it (so a small table is a prefix of a large
one with the same seed). Features ``x ∈ {0,1}^2048``: ECFP4 (:func:`polytask.tasks.data.ecfp`).

Planted model (H = ``hidden``, G groups of ``group_size`` tasks, T = ``temperature``)::

    h(x)   = tanh(W x / sqrt(max(|x|, 1)))          W ∈ R^{H×2048}, W_ij ~ N(0, 1)
    a_k    = sqrt(ρ) m_g(k) + sqrt(1 − ρ) e_k        m_g, e_k ~ N(0, I/H), ρ = ``within``
    z_k    = standardise_over_molecules(a_k · h(x))
    ℓ_k(x) = z_k / T + b_k                           b_k: mean_i σ(ℓ_ik) = π_k
    y_k    ~ Bernoulli(σ(ℓ_k(x)))

Every task reads the same H shared features (what a shared trunk can learn from all tasks) and
tasks of one group have weight vectors with correlation ρ. Target positive rates π_k are spread
log-uniformly over [``rate_min``, ``rate_max``] (evenly spaced quantiles, shuffled).

Missingness (completely at random within a task): task k observes the first n_k molecules of its
own random permutation, ``n_k = max(round(c q_k^2 N), m_k)`` where q_k are evenly spaced
quantiles in (0, 1) (shuffled: many sparse tasks, few dense ones), m_k is the smallest prefix
holding ``min_positives`` positives, and c is set by bisection so that the missing fraction is
``missing`` (when the positives floor allows).

Planted optimum: on the test part of ``random_split(N, (0.8, 0.1, 0.1), split_seed)`` (the split
polytask makes with ``split: {kind: random, seed: split_seed}``), the ROC-AUC of the true logits
ℓ_k against the observed labels, per task and its mean (tasks whose test labels hold one class
are left out). The true logit is the Bayes-optimal ranking, so no model beats it in expectation.

    python benchmarks/planted_tasks.py --tasks 600 --seed 0 --out .bench/planted/k600.csv.gz

writes the table (``smiles`` + one column per task, empty = missing) and a sidecar ``.json``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polytask.tasks.data import ecfp, random_split
from polytask.tasks.data.unlabeled import canonical, qm9_smiles, smiles_columns, table_files

REPO = Path(__file__).resolve().parents[1]
MOLECULENET = REPO.parent / "shared" / "data" / "moleculenet"
CACHE = REPO / ".bench" / "planted"
BITS = 2048


@dataclass(frozen=True)
class PlantSpec:
    """Everything the table depends on (with the molecule files)."""

    tasks: int = 100
    seed: int = 0
    molecules: int | None = None  # None: every molecule of the pool
    qm9: bool = False
    hidden: int = 64
    group_size: int = 20
    within: float = 0.5
    temperature: float = 0.5
    rate_min: float = 0.01
    rate_max: float = 0.2
    missing: float = 0.7
    min_positives: int = 19
    split_seed: int = 0


@dataclass
class Planted:
    """The planted table: canonical SMILES, task names, true logits, labels (NaN = missing)."""

    smiles: list[str]
    names: list[str]
    logits: np.ndarray  # [N, K] float32
    labels: np.ndarray  # [N, K] float32, NaN = missing
    summary: dict[str, Any] = field(default_factory=dict)


def raw_pool(qm9: bool) -> tuple[list[str], dict[str, Any]]:
    """The SMILES cells of the MoleculeNet tables (files by name, rows in order), then QM9's;
    exact repeats of a string removed."""
    import pandas as pd

    raw: list[str] = []
    columns: dict[str, list[str]] = {}
    for f in table_files([MOLECULENET]):
        frame = pd.read_csv(f, dtype=str)
        columns[f.name] = smiles_columns(frame)
        raw += [str(v).strip() for c in columns[f.name] for v in frame[c].dropna()]
    if qm9:
        raw += [s.strip() for s in qm9_smiles()]
        columns["qm9pack"] = ["SMILES"]
    unique = list(dict.fromkeys(s for s in raw if s))
    return unique, {"files": columns, "cells": len(raw)}


def rdkit_version() -> str:
    import rdkit

    return str(rdkit.__version__)


def choose_molecules(raw: list[str], n: int | None, rng: np.random.Generator) -> list[str]:
    """The first ``n`` distinct canonical SMILES in a seeded order of ``raw`` (unparsable ones
    skipped); all of them when ``n`` is None."""
    seen: set[str] = set()
    out: list[str] = []
    for i in rng.permutation(len(raw)):
        key = canonical(raw[int(i)])
        if key is not None and key not in seen:
            seen.add(key)
            out.append(key)
            if n is not None and len(out) == n:
                break
    if n is not None and len(out) < n:
        raise SystemExit(f"--molecules {n}: the pool has only {len(out)} molecules")
    return out


def molecules(spec: PlantSpec, cache: Path | None) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Canonical SMILES and their ECFP4 bits ``[N, 2048]`` (cached under ``cache``)."""
    raw, info = raw_pool(spec.qm9)
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0]))
    head = [rdkit_version(), str(spec.seed), str(spec.molecules)]
    key = hashlib.sha256("\n".join([*head, *raw]).encode())
    path = cache / f"molecules-{key.hexdigest()[:20]}.npz" if cache else None
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            smiles = z["smiles"].tobytes().decode().split("\n")
            return smiles, np.unpackbits(z["bits"], axis=1), info
    smiles = choose_molecules(raw, spec.molecules, rng)
    x = ecfp(smiles, 2, BITS, where="planted molecules", cache=False)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        text = np.frombuffer("\n".join(smiles).encode(), dtype=np.uint8)
        np.savez(tmp, smiles=text, bits=np.packbits(x, axis=1))
        tmp.replace(path)
    return smiles, x, info


def spread(k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` evenly spaced quantiles ``(i + 0.5) / k`` in a random order."""
    return rng.permutation((np.arange(k) + 0.5) / k)


def scores(
    x: np.ndarray, spec: PlantSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Standardised planted scores ``z [N, K]`` (float32) of the two-layer model, and the group
    of each task."""
    w = rng.standard_normal((BITS, spec.hidden)).astype(np.float32)
    counts = np.maximum(x.sum(axis=1, keepdims=True), 1).astype(np.float32)
    h = np.tanh((x.astype(np.float32) @ w) / np.sqrt(counts))
    groups = -(-spec.tasks // spec.group_size)
    centres = rng.standard_normal((groups, spec.hidden)) / np.sqrt(spec.hidden)
    own = rng.standard_normal((spec.tasks, spec.hidden)) / np.sqrt(spec.hidden)
    member = rng.permutation(np.arange(spec.tasks) % groups)
    a = np.sqrt(spec.within) * centres[member] + np.sqrt(1 - spec.within) * own
    s = h.astype(np.float64) @ a.T
    sd = s.std(axis=0)
    z = (s - s.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return z.astype(np.float32), member


def intercepts(z: np.ndarray, rates: np.ndarray, temperature: float) -> np.ndarray:
    """``b_k`` with ``mean_i σ(z_ik / T + b_k) = π_k`` (Newton's method on each task)."""
    b = np.log(rates / (1 - rates))
    u = z / temperature
    for _ in range(100):
        p = 1 / (1 + np.exp(-(u + b.astype(np.float32))))
        gap = p.mean(axis=0, dtype=np.float64) - rates
        if np.abs(gap).max() < 1e-6:
            return b
        slope = (p * (1 - p)).mean(axis=0, dtype=np.float64)
        b = b - np.clip(gap / np.maximum(slope, 1e-12), -2, 2)
    raise RuntimeError(f"intercepts did not converge (largest gap {np.abs(gap).max():.2e})")


def observed_counts(
    y: np.ndarray, spec: PlantSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-task permutations ``[K, N]`` and the number ``n_k`` of observed molecules of each."""
    n, k = y.shape
    perms = np.stack([rng.permutation(n).astype(np.int32) for _ in range(k)])
    hits = np.cumsum(np.take_along_axis(y.T, perms, axis=1), axis=1)
    if int(hits[:, -1].min()) < spec.min_positives:
        raise SystemExit(
            f"a task has {int(hits[:, -1].min())} positives among all {n} molecules, fewer than "
            f"--min-positives {spec.min_positives}: raise --molecules or --rate-min"
        )
    floor = (hits >= spec.min_positives).argmax(axis=1) + 1
    shape = spread(k, rng) ** 2

    def counts(c: float) -> np.ndarray:
        return np.clip(np.maximum(np.round(c * shape * n), floor), 1, n).astype(np.int64)

    target = (1 - spec.missing) * n * k
    lo, hi = 0.0, 1.0 / float(shape.min())
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if counts(mid).sum() < target else (lo, mid)
    return perms, counts(hi)


def roc_auc(score: np.ndarray, y: np.ndarray) -> float:
    """Mann–Whitney ROC-AUC (ties count one half); NaN when ``y`` holds one class."""
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    _, inv, cnt = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(cnt) - (cnt - 1) / 2)[inv]
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def plant(spec: PlantSpec, cache: Path | None = CACHE) -> Planted:
    """Plant the tasks of ``spec`` on the molecule pool (see the module docstring)."""
    smiles, x, pool = molecules(spec, cache)
    n, k = len(smiles), spec.tasks
    ss = np.random.SeedSequence([spec.seed, 1]).spawn(4)
    z, groups = scores(x, spec, np.random.default_rng(ss[0]))
    lo, hi = np.log(spec.rate_min), np.log(spec.rate_max)
    rates = np.exp(lo + (hi - lo) * spread(k, np.random.default_rng(ss[1])))
    b = intercepts(z, rates, spec.temperature)
    logits = z / np.float32(spec.temperature) + b.astype(np.float32)
    prob = 1 / (1 + np.exp(-logits))
    y = (np.random.default_rng(ss[2]).random((n, k), dtype=np.float32) < prob).astype(np.float32)
    perms, n_obs = observed_counts(y, spec, np.random.default_rng(ss[3]))
    labels = np.full((n, k), np.nan, dtype=np.float32)
    for j in range(k):
        rows = perms[j, : n_obs[j]]
        labels[rows, j] = y[rows, j]
    width = max(3, len(str(k - 1)))
    names = [f"assay_{j:0{width}d}" for j in range(k)]
    out = Planted(smiles, names, logits, labels)
    out.summary = summarise(out, spec, rates, pool)
    out.summary["per_task"]["group"] = [int(g) for g in groups]
    return out


def summarise(
    p: Planted, spec: PlantSpec, rates: np.ndarray, pool: dict[str, Any]
) -> dict[str, Any]:
    """The sidecar JSON: the spec, the table's statistics and the planted optimum."""
    n, k = p.labels.shape
    seen = ~np.isnan(p.labels)
    test = random_split(n, (0.8, 0.1, 0.1), spec.split_seed)["test"]
    aucs, test_n, test_pos = [], [], []
    for j in range(k):
        rows = test[seen[test, j]]
        aucs.append(roc_auc(p.logits[rows, j], p.labels[rows, j]))
        test_n.append(len(rows))
        test_pos.append(int(p.labels[rows, j].sum()))
    defined = [a for a in aucs if not np.isnan(a)]
    pos = np.nansum(p.labels, axis=0).astype(int)
    return {
        "spec": asdict(spec),
        "molecules": n,
        "tasks": k,
        "pool": pool,
        "rdkit": rdkit_version(),
        "missing_fraction": round(1 - float(seen.mean()), 6),
        "rows_without_labels": int((~seen.any(axis=1)).sum()),
        "labelled_per_task": _stats(seen.sum(axis=0)),
        "positives_per_task": _stats(pos),
        "split": {"kind": "random", "fractions": [0.8, 0.1, 0.1], "seed": spec.split_seed},
        "planted_optimum": {
            "mean_test_roc_auc": round(float(np.mean(defined)), 6) if defined else None,
            "tasks_with_test_auc": len(defined),
        },
        "per_task": {
            "name": p.names,
            "target_rate": [round(float(r), 6) for r in rates],
            "labelled": [int(v) for v in seen.sum(axis=0)],
            "positives": [int(v) for v in pos],
            "test_labelled": test_n,
            "test_positives": test_pos,
            "test_roc_auc": [None if np.isnan(a) else round(a, 6) for a in aucs],
        },
    }


def _stats(v: np.ndarray) -> dict[str, float]:
    return {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max())}


def write_csv(path: Path, smiles: list[str], names: list[str], labels: np.ndarray) -> None:
    """``smiles`` + one column per task; cells ``0``/``1``, empty = missing (gzip when ``.gz``;
    the bytes depend only on the content)."""
    if any("," in s or '"' in s for s in smiles):
        raise ValueError("a SMILES contains a comma or a quote")
    n, k = labels.shape
    cells = np.full((n, 2 * k), ord(","), dtype=np.uint8)
    cells[:, 1::2] = np.where(np.isnan(labels), 0, np.where(labels == 1, ord("1"), ord("0")))
    body = b"".join(
        s.encode() + row.tobytes().replace(b"\0", b"") + b"\n" for s, row in zip(smiles, cells)
    )
    data = ",".join(["smiles", *names]).encode() + b"\n" + body
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        if path.suffix == ".gz":
            with gzip.GzipFile("", "wb", compresslevel=6, fileobj=fh, mtime=0) as gz:
                gz.write(data)
        else:
            fh.write(data)
    tmp.replace(path)


def sidecar(path: Path) -> Path:
    """``x.csv`` / ``x.csv.gz`` → ``x.json``."""
    name = path.name.removesuffix(".gz").removesuffix(".csv")
    return path.with_name(name + ".json")


def command(spec: PlantSpec, out: str) -> str:
    """The command line that regenerates ``out`` (defaults left out)."""
    default = PlantSpec()
    parts = ["python benchmarks/planted_tasks.py", f"--tasks {spec.tasks}", f"--seed {spec.seed}"]
    for key, value in asdict(spec).items():
        if key not in ("tasks", "seed") and value != getattr(default, key):
            flag = "--" + key.replace("_", "-")
            parts.append(flag if value is True else f"{flag} {value}")
    return " ".join([*parts, f"--out {out}"])


def save(planted: Planted, spec: PlantSpec, out: str) -> Path:
    """Write the table to ``out`` and its sidecar JSON (the command first) next to it."""
    path = Path(out)
    write_csv(path, planted.smiles, planted.names, planted.labels)
    meta = {"command": command(spec, out), **planted.summary}
    sidecar(path).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="table path (.csv or .csv.gz)")
    parser.add_argument("--no-cache", action="store_true", help=f"do not cache under {CACHE}")
    for key, value in asdict(PlantSpec()).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(
                flag, type=float if isinstance(value, float) else int, default=value
            )
    args = parser.parse_args(argv)
    spec = PlantSpec(**{k: getattr(args, k) for k in asdict(PlantSpec())})
    start = time.perf_counter()
    planted = plant(spec, None if args.no_cache else CACHE)
    out = save(planted, spec, args.out)
    s = planted.summary
    print(
        f"{out}: {s['molecules']} molecules x {s['tasks']} tasks, missing "
        f"{s['missing_fraction']:.3f}, planted optimum mean test ROC-AUC "
        f"{s['planted_optimum']['mean_test_roc_auc']} ({time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
