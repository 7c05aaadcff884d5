"""``polytask sweep``: seeds × grid points over a tiny Tox21 slice, cached by config hash."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

import polytask.jobs.sweep as sweep_module
from polytask._core import PolytaskError
from polytask.cli.main import main
from polytask.eval import format_mean_std, load_report
from polytask.jobs.sweep import SweepResult, grid_points, parse_grid, run_sweep, set_key
from tests.conftest import small_tox21

pytest.importorskip("rdkit")

SEEDS = (0, 1)
POINTS = grid_points({"balancing.method": ["ew", "famo"]})


class Counter:
    """Wraps ``run_train`` in the sweep module and records each call's single_task flag."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[Path, bool, bool]] = []
        real = sweep_module.run_train

        def counted(config, out, **kw):  # type: ignore[no-untyped-def]
            self.calls.append((Path(out), kw["single_task"], kw["resume"]))
            return real(config, out, **kw)

        monkeypatch.setattr(sweep_module, "run_train", counted)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, SweepResult, list]:
    tmp = tmp_path_factory.mktemp("sweep")
    cfg = small_tox21(tmp)
    with pytest.MonkeyPatch.context() as mp:
        counter = Counter(mp)
        result = run_sweep(cfg, tmp / "out", seeds=SEEDS, points=POINTS)
    return cfg, tmp / "out", result, counter.calls


def expected_delta_m(cell: Path, baseline: Path) -> float:
    """Δm = -100/K Σ s (M - B)/|B| over every (task, metric) pair of the test split."""
    cell_report, base = load_report(cell), load_report(baseline)
    gains = []
    for task in cell_report.tasks:
        for metric, direction in task.metrics.items():
            m = cell_report.metrics["test"][task.name][metric]
            b = base.metrics["test"][task.name][metric]
            sign = 1 if direction == "higher is better" else -1
            gains.append(sign * (m - b) / abs(b))
    return -100 * sum(gains) / len(gains)


def test_one_baseline_per_seed_and_one_run_per_cell(swept):
    _, _, result, calls = swept
    singles = [c for c in calls if c[1]]
    assert len(calls) == 6 and len(singles) == 2  # 2 seeds x (1 baseline + 2 methods)
    assert {c[0].parent.name for c in singles} == {"baselines"}
    assert len(result.cells) == 4 and len(result.baselines) == 2
    for seed in SEEDS:
        ew, famo = (result.cell(p, seed) for p in POINTS)
        assert ew is not None and famo is not None
        assert ew.baseline == famo.baseline  # balancing does not change the baseline
        assert ew.folder != famo.folder
        assert load_report(ew.folder.report_file).baseline["source"] == str(ew.baseline.report_file)
    assert len({c.baseline for c in result.cells}) == 2
    assert not any(c.cached for c in result.cells)


def test_cell_delta_m_is_against_its_seeds_baseline(swept):
    _, _, result, _ = swept
    for cell in result.cells:
        expected = expected_delta_m(cell.folder.report_file, cell.baseline.report_file)
        assert cell.delta_m() == pytest.approx(expected, rel=1e-12, abs=1e-12)
        other = next(b for b in result.baselines if b.folder != cell.baseline)
        assert cell.delta_m() != pytest.approx(expected_delta_m(cell.folder.report_file, other.folder.report_file))  # fmt: skip


def test_seed_sets_the_seed_and_the_split_seed(swept):
    _, out, result, _ = swept
    for cell in result.cells:
        raw = yaml.safe_load((out / "configs" / f"{cell.config_hash}.yaml").read_text())
        assert raw["seed"] == cell.seed and raw["data"]["split"]["seed"] == cell.seed
        assert raw["balancing"]["method"] == cell.point["balancing.method"]
        assert cell.report.config_hash is not None
    a, b = (result.cell(POINTS[0], s) for s in SEEDS)
    assert a.report.metrics["test"] != b.report.metrics["test"]


def test_summary_files_hold_the_numbers(swept):
    _, out, result, _ = swept
    data = json.loads((out / "sweep.json").read_text())
    assert data["metric"] == "roc_auc" and data["higher_is_better"] is True
    assert [c["seed"] for c in data["cells"]] == [0, 0, 1, 1]
    auc = {p["balancing.method"]: [result.cell(p, s).value("roc_auc") for s in SEEDS] for p in POINTS}  # fmt: skip
    rows = {r["label"]: r for r in data["summary"]["roc_auc"]}
    assert rows["balancing.method=ew"]["mean"] == pytest.approx(statistics.mean(auc["ew"]))
    assert rows["balancing.method=ew"]["std"] == pytest.approx(statistics.stdev(auc["ew"]))
    diffs = [f - e for f, e in zip(auc["famo"], auc["ew"])]
    paired = rows["balancing.method=famo"]["vs_first"]
    assert paired["mean"] == pytest.approx(statistics.mean(diffs))
    assert rows["balancing.method=ew"]["vs_first"] is None
    text = (out / "summary.md").read_text()
    assert f"| balancing.method=ew | 2 | {format_mean_std(auc['ew'])} |" in text
    dm = [result.cell(POINTS[1], s).delta_m() for s in SEEDS]
    assert format_mean_std(dm, 2, signed=True) in text
    base = [b.value("roc_auc") for b in result.baselines]
    assert f"| single-task baselines | 2 | {format_mean_std(base)} | 0 |" in text


def test_rerun_reads_back_and_resumes_an_unfinished_cell(swept, monkeypatch):
    cfg, out, first, _ = swept
    counter = Counter(monkeypatch)
    again = run_sweep(cfg, out, seeds=SEEDS, points=POINTS)
    assert counter.calls == [] and all(c.cached for c in (*again.cells, *again.baselines))
    assert [c.report.metrics for c in again.cells] == [c.report.metrics for c in first.cells]
    cell = first.cell(POINTS[1], 1)
    cell.folder.report_file.unlink()  # as if the sweep had stopped before this cell finished
    resumed = run_sweep(cfg, out, seeds=SEEDS, points=POINTS)
    assert counter.calls == [(cell.folder.path, False, True)]
    assert resumed.cell(POINTS[1], 1).report.metrics == cell.report.metrics


def test_cached_only_trains_nothing(swept, tmp_path, monkeypatch):
    cfg, out, _, _ = swept
    counter = Counter(monkeypatch)
    result = run_sweep(cfg, out, seeds=(0, 7), points=POINTS, cached_only=True, write=False)
    assert counter.calls == [] and {c.seed for c in result.cells} == {0}


def test_bad_grid_key_is_one_line_and_trains_nothing(tmp_path, capsys, monkeypatch):
    counter = Counter(monkeypatch)
    cfg = small_tox21(tmp_path)
    for grid, needle in (
        ("balancing.methd=ew", "key 'balancing.methd': unknown key"),
        ("balancing.method=ew,nope", "key 'balancing.method': unknown method 'nope'"),
        ("train.steps.x=1", "'train.steps' is a value, not a section"),
        ("balancing.method", "write KEY=VALUE"),
        ("evaluation.batch_size=8,16", "'evaluation.batch_size' cannot be a grid key"),
        ("data.split.seed=1,2", "give seeds with --seeds"),
    ):
        args = [
            "sweep",
            str(cfg),
            "--seeds",
            "0",
            "1",
            "--grid",
            grid,
            "--out",
            str(tmp_path / "o"),
        ]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert needle in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert counter.calls == [] and not (tmp_path / "o").exists()


def test_parse_grid_reads_yaml_scalars():
    grid = parse_grid(["train.optimizer.lr=0.001,0.01", "model.trunk.batch_norm=true,false"])
    assert grid == {"train.optimizer.lr": [0.001, 0.01], "model.trunk.batch_norm": [True, False]}
    assert len(grid_points(grid)) == 4 and grid_points(grid)[1] == {
        "train.optimizer.lr": 0.001, "model.trunk.batch_norm": False}  # fmt: skip
    for bad in (["a=1", "a=2"], ["a=1,1"], ["a="], ["=1"], ["a=[1"]):
        with pytest.raises(PolytaskError):
            parse_grid(bad)


def test_set_key_creates_sections_and_indexes_lists():
    raw: dict[str, object] = {"stages": [{"name": "a"}, {"name": "b"}], "balancing": None}
    set_key(raw, "stages.1.epochs", 3)
    set_key(raw, "balancing.method", "ew")
    assert raw == {"stages": [{"name": "a"}, {"name": "b", "epochs": 3}], "balancing": {"method": "ew"}}  # fmt: skip
    with pytest.raises(PolytaskError, match="not an item"):
        set_key(raw, "stages.2.epochs", 1)


def test_a_point_that_replaces_the_data_still_gets_the_seeds_split(tmp_path):
    from polytask.jobs.sweep import plan

    raw = yaml.safe_load(small_tox21(tmp_path).read_text())
    data = {**raw["data"], "split": {"kind": "random", "seed": 0}, "tasks": ["SR-MMP"]}
    cells = plan(raw, [{}, {"data": data}], [3], tmp_path / "o", "small.yaml", None, True)
    assert [c.raw["data"]["split"]["seed"] for c in cells] == [3, 3]
    assert [c.raw["seed"] for c in cells] == [3, 3]
    assert cells[1].raw["data"]["tasks"] == ["SR-MMP"]
    assert cells[0].baseline.chash != cells[1].baseline.chash  # other tasks: another baseline
