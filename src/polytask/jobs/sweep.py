"""Sweeps: one training config over seeds × grid points, every run cached by its config hash.

A *grid point* overrides config values by dotted key (``balancing.method``, ``stages.1.epochs``);
a seed sets ``seed`` and every data split's seed (each seed re-draws split and initialisation).
Each (point, seed) cell is one :func:`~polytask.jobs.train.run_train` run. ``DIR`` holds::

    DIR/sweep.json            the cells and the summary (SweepResult.to_json)
    DIR/summary.md            per grid point: mean ± std over seeds, paired differences
    DIR/configs/<hash>.yaml   the effective config of every run (data paths made absolute)
    DIR/runs/<hash>/          one multi-task run per cell
    DIR/baselines/<hash>/     one single-task run (``--single-task``) per seed

``<hash>`` is :func:`~polytask.config.load.config_hash` of the run's effective config: a rerun
reads finished runs back (``report.json``), resumes unfinished ones, trains changed configs anew.
Single-task runs leave ``balancing`` out, so grid points that differ only there share one
baseline per seed; each cell is trained against its seed's baseline (Δm in its report). Every
override is checked against the schema before anything trains (one line naming the key).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from polytask._core import PolytaskError, write_text
from polytask.config.load import config_hash, read_yaml, validate
from polytask.config.schema import TrainConfig
from polytask.eval import Report, load_report, mean_rank_line
from polytask.eval.summary import MethodSummary, format_mean_std, markdown_table, summarise_runs

from .output import is_polytask_folder, output_folder
from .run_folder import RunFolder
from .train import run_train, single_task_config

Point = dict[str, object]  # dotted key -> value
Raw = dict[str, object]  # a config as YAML reads it
OnRun = Callable[["SweepRun"], None]
UNHASHED = ("evaluation", "device")  # a run is cached by what it trains (as resume checks it)


@dataclass(frozen=True)
class SweepRun:
    """One finished run of a sweep: a grid cell (``point``, ``seed``) or a baseline (no point)."""

    point: Point
    seed: int
    folder: RunFolder
    config_hash: str
    report: Report
    cached: bool  # read back from an earlier sweep, not trained now
    baseline: RunFolder | None = None  # a cell's single-task baseline

    def value(self, metric: str, split: str = "test") -> float:  # averaged over the tasks
        return self.report.means[split].get(metric, math.nan)

    def delta_m(self, split: str = "test") -> float | None:
        comp = (self.report.comparison or {}).get(split)
        return None if comp is None else comp.delta_m


@dataclass(frozen=True)
class SweepResult:
    """The finished cells of a sweep (seeds outer, points inner), its baselines, and the main
    metric of its summary (the selection rule's unless given) with its direction."""

    out: Path
    points: tuple[Point, ...]
    seeds: tuple[int, ...]
    cells: tuple[SweepRun, ...]
    baselines: tuple[SweepRun, ...]
    metric: str
    higher_is_better: bool
    config: str | None = None

    def cell(self, point: Mapping[str, object], seed: int) -> SweepRun | None:
        return next((c for c in self.cells if c.point == point and c.seed == seed), None)

    def baseline_of(self, cell: SweepRun) -> SweepRun | None:
        return next((b for b in self.baselines if b.folder == cell.baseline), None)

    def by_point(self) -> dict[str, dict[int, SweepRun]]:
        """``{label: {seed: cell}}`` in grid order (points with a finished cell)."""
        out: dict[str, dict[int, SweepRun]] = {point_label(p): {} for p in self.points}
        for c in self.cells:
            out[point_label(c.point)][c.seed] = c
        return {k: v for k, v in out.items() if v}

    def to_json(self) -> dict[str, object]:
        def run(r: SweepRun) -> dict[str, object]:
            base = r.baseline and str(r.baseline.path.relative_to(self.out))
            return {
                "label": point_label(r.point), "point": r.point, "seed": r.seed, "config_hash": r.config_hash,
                "run": str(r.folder.path.relative_to(self.out)), "baseline": base,
                self.metric: finite(r.value(self.metric)), "delta_m": finite(r.delta_m()),
                "cached": r.cached,
            }  # fmt: skip

        return {
            "config": self.config, "points": list(self.points), "seeds": list(self.seeds),
            "metric": self.metric, "higher_is_better": self.higher_is_better,
            "cells": [run(c) for c in self.cells], "baselines": [run(b) for b in self.baselines],
            "summary": summary_json(self),
        }  # fmt: skip


def finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def point_label(point: Mapping[str, object]) -> str:
    """``key=value, key=value`` (values other than text as JSON; ``config`` for no override)."""
    text = {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in point.items()}  # fmt: skip
    return ", ".join(f"{k}={v}" for k, v in text.items()) or "config"


def parse_grid(specs: Sequence[str]) -> dict[str, list[object]]:
    """``["balancing.method=ew,famo", ...]`` → ``{"balancing.method": ["ew", "famo"]}``; each
    value is read as a YAML scalar (``0.1`` a float, ``true`` a bool, ``ew`` a string)."""
    grid: dict[str, list[object]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        key, items = key.strip(), [v.strip() for v in text.split(",")]
        if not sep or not key or not all(items):
            raise PolytaskError(f"--grid {spec!r}: write KEY=VALUE[,VALUE...], e.g. balancing.method=ew,famo")  # fmt: skip
        if key in grid:
            raise PolytaskError(f"--grid {key}: given twice; list all its values in one --grid")
        try:
            values = [yaml.safe_load(v) for v in items]
        except yaml.YAMLError:
            values = [[]]  # refused below
        if any(isinstance(v, list | dict) for v in values):
            raise PolytaskError(f"--grid {key}: {text!r} is not a list of YAML scalars")
        if len({json.dumps(v) for v in values}) != len(values):
            raise PolytaskError(f"--grid {key}: a value is listed twice")
        grid[key] = values
    return grid


def check_grid(points: Sequence[Point], seeds: Sequence[int], where: str) -> None:
    """Distinct seeds and points; no grid key the sweep sets itself or leaves out of the hash."""
    for key in (k for p in points for k in p):
        if key in ("seed", "data.split.seed") or key.split(".")[0] in UNHASHED:
            why = "give seeds with --seeds" if "seed" in key else "it does not change training"
            raise PolytaskError(f"{where}: {key!r} cannot be a grid key ({why})")
    if not seeds or len({*seeds}) != len(seeds) or len({*map(point_label, points)}) != len(points):
        raise PolytaskError(f"{where}: a sweep needs distinct seeds (one or more) and grid points")


def grid_points(grid: Mapping[str, Sequence[object]]) -> list[Point]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def set_key(raw: Raw, key: str, value: object) -> None:
    """Set the dotted ``key`` of ``raw`` (missing sections created, list items by index)."""
    node: object = raw
    *parents, last = key.split(".")
    for i, part in enumerate([*parents, last]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise PolytaskError(f"key '{key}': {part!r} is not an item of the list")
            index: int | str = int(part)
        elif isinstance(node, dict):
            index = part
            if i < len(parents) and node.get(part) is None:
                node[part] = {}  # a missing (or empty) section
        else:
            raise PolytaskError(f"key '{key}': {'.'.join(parents[:i])!r} is a value, not a section")
        if i == len(parents):
            node[index] = copy.deepcopy(value)  # type: ignore[index]
        else:
            node = node[index]  # type: ignore[index]


def absolute_paths(node: Raw, base: Path, in_data: bool = False) -> Raw:
    """``node`` with the data paths (read relative to the config's folder) made absolute."""
    out: Raw = {}
    for k, v in node.items():
        if in_data and k in ("path", "paths"):
            out[k] = [str(base / p) for p in v] if isinstance(v, list) else str(base / str(v))
        else:
            inner = in_data or k in ("data", "datasets")
            items = v if isinstance(v, list) else [v]
            fixed = [absolute_paths(x, base, inner) if isinstance(x, dict) else x for x in items]
            out[k] = fixed if isinstance(v, list) else fixed[0]
    return out


def seed_keys(config: TrainConfig, seed: int) -> Point:
    """The overrides of a seed: ``seed`` and the split seed of each data section."""
    keys: Point = {"seed": seed}
    if hasattr(getattr(config.data, "split", None), "seed"):  # a split column has no seed
        keys["data.split.seed"] = seed
    for i, stage in enumerate(config.stages or []):
        if stage.data is not None and hasattr(getattr(stage.data, "split", None), "seed"):
            keys[f"stages.{i}.data.split.seed"] = seed
    return keys


def effective(raw: Raw, overrides: Mapping[str, object], where: str) -> tuple[Raw, TrainConfig]:
    """``raw`` with ``overrides`` set, and validated (one line naming the key if refused)."""
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        try:
            set_key(out, key, value)
        except PolytaskError as exc:
            raise PolytaskError(f"{where}: {exc}") from None
    return out, validate(TrainConfig, out, where)


@dataclass(frozen=True)
class Planned:
    """A run to train or read back: its effective config, hash and folder."""

    point: Point
    seed: int
    raw: Raw
    chash: str
    folder: RunFolder
    baseline: Planned | None = None  # a cell's; None for a baseline itself
    single_task: bool = False


def plan(
    raw: Raw, points: Sequence[Point], seeds: Sequence[int], out: Path, where: str,
    per_seed: Callable[[int], Mapping[str, object]] | None, baselines: bool,
) -> list[Planned]:  # fmt: skip
    """Every cell (seeds outer, points inner; a point set before its seed), all validated."""
    cells: list[Planned] = []
    for seed, point in itertools.product(seeds, points):
        label = f"{where} with {point_label(point)}" if point else where
        seeded = {**seed_keys(effective(raw, point, label)[1], seed), **(per_seed(seed) if per_seed else {})}  # fmt: skip
        cell_raw, config = effective(raw, {**point, **seeded}, label)
        base = None
        if baselines:
            single = {k: v for k, v in cell_raw.items() if k != "balancing"}
            bhash = config_hash(single_task_config(config), ignore=UNHASHED)
            folder = RunFolder(out / "baselines" / bhash)
            base = Planned({}, seed, single, bhash, folder, single_task=True)
        chash = config_hash(config, ignore=UNHASHED)
        cells.append(Planned(point, seed, cell_raw, chash, RunFolder(out / "runs" / chash), base))
    return cells


def train_cached(
    run: Planned, out: Path, baseline: RunFolder | None, progress: bool, cached_only: bool
) -> SweepRun | None:
    """The run read back when finished; else trained (or resumed), unless ``cached_only``."""
    folder, cached = run.folder, run.folder.finished
    if cached:
        report = load_report(folder.report_file)
    elif cached_only:
        return None
    else:
        path = out / "configs" / f"{run.chash}.yaml"  # the effective config, for the record
        write_text(path, yaml.safe_dump(run.raw, sort_keys=False))
        report = run_train(
            path, folder.path, single_task=run.single_task, resume=True, progress=progress,
            baseline=None if baseline is None else baseline.report_file,
        )  # fmt: skip
    return SweepRun(run.point, run.seed, folder, run.chash, report, cached, baseline)


def train_all(
    cells: Sequence[Planned], out: Path, progress: bool, cached_only: bool, on_run: OnRun | None
) -> tuple[list[SweepRun], list[SweepRun]]:
    """Each seed's baseline (once per baseline config), then the seed's cells."""
    done: list[SweepRun] = []
    bases: dict[str, SweepRun | None] = {}

    def train(planned: Planned, against: SweepRun | None) -> SweepRun | None:
        run = train_cached(planned, out, getattr(against, "folder", None), progress, cached_only)
        if run is not None and on_run is not None:
            on_run(run)
        return run

    for cell in cells:
        if cell.baseline is not None and cell.baseline.chash not in bases:
            bases[cell.baseline.chash] = train(cell.baseline, None)
        against = None if cell.baseline is None else bases[cell.baseline.chash]
        if cell.baseline is not None and against is None:
            continue  # cached_only and no finished baseline: the cell cannot be compared
        if (run := train(cell, against)) is not None:
            done.append(run)
    return done, [b for b in bases.values() if b is not None]


def main_metric(config: TrainConfig, runs: Sequence[SweepRun], metric: str | None) -> tuple[str, bool]:  # fmt: skip
    """``metric``, else the selection rule's, else the first; and whether higher is better."""
    name = metric or (config.train.selection or "").rpartition(":")[2]
    tasks = runs[0].report.tasks if runs else []
    name = name or next((m for t in tasks for m in t.metrics), "")
    direction = next((t.metrics[name] for t in tasks if name in t.metrics), None)
    if runs and direction is None:
        raise PolytaskError(f"metric {name!r}: no task of the sweep has it")
    return name, direction != "lower is better"


def run_sweep(
    config: str | Path | Mapping[str, object], out: str | Path, *, seeds: Sequence[int],
    points: Sequence[Mapping[str, object]] = ({},), base_dir: str | Path | None = None,
    per_seed: Callable[[int], Mapping[str, object]] | None = None, baselines: bool = True,
    metric: str | None = None, progress: bool = False, cached_only: bool = False,
    on_run: OnRun | None = None, write: bool = True,
) -> SweepResult:  # fmt: skip
    """Train ``config`` (a YAML path, or a mapping whose relative paths start at ``base_dir``)
    at every grid point × seed under ``out`` (see the module); the result, also written to
    ``out/sweep.json`` and ``out/summary.md`` unless ``write=False``.

    ``points`` are dotted-key overrides (:func:`grid_points` of a grid); ``per_seed(seed)`` adds
    overrides of one seed. ``cached_only`` trains nothing: unfinished runs are left out.
    ``on_run`` is called after every run (baselines too) with its :class:`SweepRun`.
    """
    path = None if isinstance(config, Mapping) else Path(config)
    raw = copy.deepcopy(dict(config)) if isinstance(config, Mapping) else read_yaml(config)
    where = str(path or "config")
    base = path.resolve().parent if path is not None else Path(base_dir or ".").resolve()
    grid = [dict(p) for p in points] or [{}]
    check_grid(grid, seeds, where)
    fixed = absolute_paths(raw, base)
    out = Path(out)
    cells = plan(fixed, grid, seeds, out, where, per_seed, baselines)
    if not is_polytask_folder(out):  # claimed once, by the output policy; then continued
        with output_folder(out, "sweep", resume=True):
            pass
    with output_folder(out, "sweep", resume=True):
        done, bases = train_all(cells, out, progress, cached_only, on_run)
    name, higher = main_metric(effective(fixed, {}, where)[1], [*done, *bases], metric)
    result = SweepResult(out, tuple(grid), tuple(seeds), tuple(done), tuple(bases), name,
                         higher, None if path is None else str(path))  # fmt: skip
    if write:
        write_text(out / "sweep.json", json.dumps(result.to_json(), indent=2) + "\n")
        write_text(out / "summary.md", "\n".join(summary_markdown(result)) + "\n")
    return result


def summaries(result: SweepResult) -> dict[str, list[MethodSummary]]:
    """Per grid point over seeds, paired with the first point: the main metric and Δm."""
    groups, out = result.by_point(), {}
    ref = next(iter(groups), "")
    getters: dict[str, tuple[bool, Callable[[SweepRun], float | None]]] = {
        result.metric: (result.higher_is_better, lambda c: c.value(result.metric)),
        "delta_m": (False, lambda c: c.delta_m()),
    }
    for name, (higher, get) in getters.items():
        runs = {k: {s: v for s, c in g.items() if (v := finite(get(c))) is not None}
                for k, g in groups.items()}  # fmt: skip
        if runs.get(ref):
            shared = {k: r for k, r in runs.items() if set(r) & set(runs[ref])}
            out[name] = summarise_runs(shared, ref, higher_is_better=higher)
    return out


def summary_json(result: SweepResult) -> dict[str, list[dict[str, object]]]:
    def one(s: MethodSummary) -> dict[str, object]:
        p = s.paired
        first = p and {"mean": p.mean, "std": finite(p.std), "se": finite(p.se), "n": p.n,
                       "verdict": p.verdict, "wins": p.wins, "losses": p.losses}  # fmt: skip
        return {"label": s.method, "n": s.n, "mean": s.mean, "std": finite(s.std), "vs_first": first}  # fmt: skip

    return {name: [one(s) for s in rows] for name, rows in summaries(result).items()}


def summary_markdown(result: SweepResult) -> list[str]:
    """``summary.md``: the baselines and one row per grid point, mean ± std over seeds."""
    m, groups, arrow = result.metric, result.by_point(), "↑" if result.higher_is_better else "↓"
    lines = [
        f"# Sweep: {result.config or 'config'}", "",
        f"Seeds {', '.join(map(str, result.seeds))}; test split, mean ± std over seeds (sample "
        "std). Δm % against the same seed's single-task baselines (lower is better). '− first': "
        f"this point minus the first ({next(iter(groups), '—')}) on the seeds both have, mean ± "
        "std of the differences; better / worse when |mean| > 2 standard errors.", "",
    ]  # fmt: skip
    rows = []
    if result.baselines:
        values = [b.value(m) for b in result.baselines]
        rows.append(["single-task baselines", str(len(values)), fmt(values, 4), "0", *["—"] * 4])
    by = {name: {s.method: s for s in found} for name, found in summaries(result).items()}
    for label, cells in groups.items():
        dms = [d for c in cells.values() if (d := finite(c.delta_m())) is not None]
        row = [label, str(len(cells)), fmt([c.value(m) for c in cells.values()], 4),
               fmt(dms, 2, signed=True)]  # fmt: skip
        for name, digits in ((m, 4), ("delta_m", 2)):
            p = getattr(by.get(name, {}).get(label), "paired", None)
            row += ["—", "—"] if p is None else [p.format(digits), p.verdict]
        rows.append(row)
    head = ["grid point", "seeds", f"test {m} ({arrow})", "Δm % (↓)", f"{m} − first", "verdict"]
    return [*lines, *markdown_table([*head, "Δm − first", "verdict"], rows), *(["", r] if (r := mean_rank_line({k: [c.report.metrics["test"] for c in g.values()] for k, g in groups.items()}, m, result.higher_is_better)) else [])]  # fmt: skip


def fmt(values: Sequence[float], digits: int, *, signed: bool = False) -> str:
    return format_mean_std([v for v in values if math.isfinite(v)], digits, signed=signed, empty="—")  # fmt: skip
