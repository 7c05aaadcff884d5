"""``polytask merge`` with ``run:``: Fisher, RegMean and AdaMerging on a single-task run's trunks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from polytask.cli.main import main
from polytask.config.merge import load_merge_config
from polytask.jobs.merge import resolve_run
from polytask.jobs.merge_data import merge_inputs
from polytask.merging.model import AdaMerging, FisherMerge, RegMean, TallMaskSet
from tests.conftest import REPO, small_tox21

TASKS = ("NR-AhR", "SR-ARE", "SR-MMP")


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("merge_run")
    cfg = small_tox21(root, steps=20)
    out = root / "single"
    assert main(["train", str(cfg), "--out", str(out), "--single-task", "--no-progress"]) == 0
    return out


def _merge(tmp: Path, single: Path, name: str, **entries: object) -> tuple[int, Path]:
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({"run": str(single), **entries}))
    out = tmp / name
    return main(["merge", str(cfg), "--out", str(out)]), out


def safe_open_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def _trunks(single: Path) -> tuple[dict, list[dict]]:
    base = load_file(str(single / "base" / "trunk.safetensors"))
    return base, [load_file(str(single / "single" / t / "trunk.safetensors")) for t in TASKS]


@pytest.mark.parametrize(
    ("method", "options", "data", "expected"),
    [
        ("fisher", {"likelihood": "bernoulli"}, {"batches": 2, "batch_size": 32}, FisherMerge),
        ("regmean", {"alpha": 0.5}, {"batches": 2, "batch_size": 32}, RegMean),
        (
            "adamerging",
            {"steps": 3, "lr": 0.01, "likelihood": "bernoulli"},
            {"batches": 1, "batch_size": 32},
            AdaMerging,
        ),
    ],
)
def test_cli_merge_from_run_equals_the_python_api(
    single: Path, tmp_path: Path, method: str, options: dict, data: dict, expected: type
) -> None:
    code, out = _merge(tmp_path, single, method, method=method, options=options, data=data)
    assert code == 0
    info = json.loads((out / "merge.json").read_text())
    split = "test" if method == "adamerging" else "train"
    assert info["data"]["tasks"] == list(TASKS) and info["data"]["split"] == split
    assert set(info["data"]["rows"]) == set(TASKS)
    assert all(0 < n <= data["batches"] * data["batch_size"] for n in info["data"]["rows"].values())
    # the same merge through the Python API, on the data the config layer prepared
    method_obj = expected(**options)
    cfg = resolve_run(load_merge_config(tmp_path / f"{method}.yaml"), "test config")
    inputs, _ = merge_inputs(
        single, method_obj, split, data["batches"], data["batch_size"], "test config"
    )
    base, finetuned = _trunks(single)
    reference = method_obj.merge(base, finetuned, **inputs).state
    merged = load_file(str(next(out.glob("model*.safetensors"))))
    assert merged.keys() == base.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(merged[key], value.to(merged[key].dtype), rtol=0, atol=0)
    assert any(not merged[k].equal(f[k]) for f in finetuned for k in merged)
    assert cfg.models is not None and [Path(m.path).parent.name for m in cfg.models] == list(TASKS)


def test_run_shorthand_for_data_free_methods_and_eval(single: Path, tmp_path: Path) -> None:
    code, out = _merge(tmp_path, single, "ta", method="task_arithmetic", options={"lam": 0.4})
    assert code == 0
    base, finetuned = _trunks(single)
    merged = load_file(str(next(out.glob("model*.safetensors"))))
    for key in base:
        expected = base[key] + 0.4 * sum((f[key] - base[key] for f in finetuned), torch.zeros(()))
        torch.testing.assert_close(merged[key], expected)
    example = yaml.safe_load((REPO / "examples" / "merge" / "tox21_fisher.yaml").read_text())
    example.pop("run")
    code, fisher = _merge(tmp_path, single, "fi", **example)
    report = tmp_path / "merged.json"
    args = ["eval", str(single), "--trunk", str(fisher), "--out", str(report)]
    assert code == 0 and main(args) == 0
    metrics = json.loads(report.read_text())["metrics"]["test"]
    assert set(metrics) == set(TASKS) and all(0 < m["roc_auc"] < 1 for m in metrics.values())


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"method": "fisher"}, "task 'NR-AhR' is binary, which likelihood 'categorical' cannot"),
        ({"method": "regmean", "data": {"split": "dev"}}, "data.split"),
        ({"method": "regmean", "data": {"batches": 0}}, "data.batches"),
        ({"method": "regmean", "base_model": "x"}, "either 'run'"),
        ({"method": "ties", "data": {"batches": 2}}, "'data' is read only by fisher"),
    ],
)
def test_bad_run_merges(
    single: Path, tmp_path: Path, entries: dict, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _merge(tmp_path, single, "bad", **entries)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_data_method_needs_a_single_task_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "m.yaml"
    cfg.write_text(yaml.safe_dump({"method": "fisher", "base_model": "b", "models": ["a"]}))
    assert main(["merge", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "name a single-task run with 'run:'" in capsys.readouterr().err
    joint = tmp_path / "joint"
    assert (
        main(["train", str(small_tox21(tmp_path, steps=5)), "--out", str(joint), "--no-progress"])
        == 0
    )
    capsys.readouterr()
    cfg.write_text(yaml.safe_dump({"method": "regmean", "run": str(joint)}))
    assert main(["merge", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "is not a single-task run" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bn_single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("merge_bn_run")
    cfg = small_tox21(root, steps=15)
    spec = yaml.safe_load(cfg.read_text())
    spec["model"]["trunk"]["batch_norm"] = True
    cfg.write_text(yaml.safe_dump(spec))
    out = root / "single"
    assert main(["train", str(cfg), "--out", str(out), "--single-task", "--no-progress"]) == 0
    return out


def test_extrapolated_running_variance_is_refused_and_recomputed_by_default(
    bn_single: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # task arithmetic with λ·T > 1 drives a running variance negative: under buffers: merge the
    # merge stops naming the tensor; the default with run: (recompute) re-estimates them
    code, out = _merge(
        tmp_path, bn_single, "ta", method="task_arithmetic", options={"lam": 3.0}, buffers="merge"
    )
    err = capsys.readouterr().err
    assert code == 2 and "'trunk.1.running_var'" in err and "negative running variance" in err
    assert err.count("\n") == 1 and not out.exists()
    code, out = _merge(tmp_path, bn_single, "ta2", method="task_arithmetic", options={"lam": 3.0})
    assert code == 0
    info = json.loads((out / "merge.json").read_text())
    assert info["buffers"] == "recompute" and info["norm_stats"]["split"] == "train"
    assert "trunk.1.running_var" in info["buffer_tensors"]
    merged = load_file(str(next(out.glob("model*.safetensors"))))
    assert float(merged["trunk.1.running_var"].min()) >= 0
    meta = json.loads(safe_open_metadata(next(out.glob("model*.safetensors")))["polytask.merge"])
    assert meta["buffers"] == "recompute"
    args = ["eval", str(bn_single), "--trunk", str(out), "--out", str(tmp_path / "r.json")]
    assert main(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(0 < m["roc_auc"] < 1 for m in report["metrics"]["test"].values())
    # the merged trunk's statistics are those --norm-stats computes on the same weights
    assert main([*args[:-1], str(tmp_path / "r2.json"), "--norm-stats"]) == 0
    again = json.loads((tmp_path / "r2.json").read_text())["metrics"]["test"]
    for task, m in report["metrics"]["test"].items():
        assert m["roc_auc"] == pytest.approx(again[task]["roc_auc"], abs=1e-6)
    assert main(["eval", str(bn_single), "--norm-stats"]) == 2
    assert "give --trunk" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["adamerging", "fisher", "regmean", "tall_masks", "ties"])
@pytest.mark.parametrize("buffers", ["recompute", "average", "base"])
def test_every_method_merges_a_batch_norm_trunk_from_a_run(
    bn_single: Path, tmp_path: Path, method: str, buffers: str
) -> None:
    options: dict[str, object] = {
        "adamerging": {"steps": 3, "lr": 0.05, "likelihood": "bernoulli", "init": 0.5},
        "fisher": {"likelihood": "bernoulli"},
        "regmean": {},
        "tall_masks": {"grid": [0.2, 0.6]},
        "ties": {"lam": 2.0},
    }[method]
    data = {"batches": 1, "batch_size": 32} if method != "ties" else None
    extra = {"data": data} if data else {}
    code, out = _merge(
        tmp_path, bn_single, method, method=method, options=options, buffers=buffers, **extra
    )
    assert code == 0
    info = json.loads((out / "merge.json").read_text())
    assert info["buffers"] == buffers
    base, finetuned = _trunks(bn_single)
    merged = load_file(str(next(out.glob("model*.safetensors"))))
    assert merged.keys() == base.keys()
    assert all(bool(torch.isfinite(v).all()) for v in merged.values() if v.is_floating_point())
    var = merged["trunk.1.running_var"]
    assert float(var.min()) >= 0
    if buffers == "base":
        assert torch.equal(var, base["trunk.1.running_var"])
    elif buffers == "average":
        mean = sum(f["trunk.1.running_var"] for f in finetuned) / len(finetuned)
        torch.testing.assert_close(var, mean)
    if method == "adamerging":
        assert all(0.0 <= c <= 1.0 for c in info["outcome"]["coefficients"])


def test_tall_masks_from_a_run_choose_each_lambda_on_validation_and_rebuild_each_task(
    bn_single: Path, tmp_path: Path
) -> None:
    grid = [0.2, 0.5, 1.0]
    code, out = _merge(
        tmp_path, bn_single, "tall", method="tall_masks", options={"grid": grid},
        data={"batches": 2, "batch_size": 32},
    )  # fmt: skip
    assert code == 0
    info = json.loads((out / "merge.json").read_text())
    outcome = info["outcome"]
    assert outcome["lambda_selection"] == "grid" and info["data"]["split"] == "val"
    scores = outcome["validation_scores"]
    assert len(scores) == len(TASKS) and all(len(s) == len(grid) for s in scores)
    for lam, task_scores in zip(outcome["lambdas"], scores):
        assert lam == grid[task_scores.index(max(task_scores))]
    store = TallMaskSet.load(out / "merge_tensors.safetensors")
    base, finetuned = _trunks(bn_single)
    for t in range(len(TASKS)):
        rebuilt = store.reconstruct(base, t)
        assert rebuilt.keys() == base.keys()
        # each task's model keeps its own running statistics
        assert torch.equal(rebuilt["trunk.1.running_var"], finetuned[t]["trunk.1.running_var"])
        mask = store.mask(t)
        key = "trunk.0.weight"
        expected = base[key] + mask[key] * store.merged_vector[key]
        torch.testing.assert_close(rebuilt[key], expected)
