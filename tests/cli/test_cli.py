"""CLI behaviour: help, the examples, and one-line errors with exit code 2 for bad input."""

import math
import re
from pathlib import Path

import pytest
import yaml

from polytask.cli.main import main
from tests.conftest import REPO, SHARED_DATA, small_tox21

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "eval" in out


@pytest.mark.needs("rdkit")  # the examples featurise SMILES
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_runs_on_a_small_budget(example, tmp_path, capsys):
    data = yaml.safe_load(example.read_text())
    if data.get("data", {}).get("source") == "per_task" and not SHARED_DATA.exists():
        pytest.skip("shared data not available")
    if "datasets" in data.get("data", {}):
        for ds in data["data"]["datasets"]:
            ds["path"] = str((example.parent / ds["path"]).resolve())
    if data.get("data", {}).get("source") == "table":
        data["data"]["path"] = str((example.parent / data["data"]["path"]).resolve())
    train = data.setdefault("train", {})
    train.pop("epochs", None)
    train.update(steps=6, eval_every=3)
    cfg = tmp_path / example.name
    cfg.write_text(yaml.safe_dump(data))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'run' / 'report.json'}\n"
    assert (tmp_path / "run" / "report.json").is_file()
    assert main(["eval", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr()
    assert printed.out == f"{tmp_path / 'run' / 'eval.json'}\n"  # where eval wrote
    assert "(evaluation)" in printed.err and "mean" in printed.err
    assert (tmp_path / "run" / "eval.json").is_file()


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


BASE = {
    "data": {"source": "tox21", "tasks": ["NR-AhR"], "featurizer": {"kind": "ecfp", "bits": 64}},
    "train": {"steps": 2},
}


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"trian": {}}, r"key 'trian': unknown key"),
        ({"train": {"steps": "many"}}, r"key 'train.steps'"),
        ({"train": {"steps": 2, "epochs": 3}}, r"exactly one of 'epochs' and 'steps'"),
        ({"model": {"trunk": {"dropout": 1.5}}}, r"key 'model.trunk.dropout'"),
        ({"data": {"source": "tox21", "tasks": ["NR-XX"]}}, r"unknown Tox21 task"),
        (
            {"data": {"source": "table", "path": "missing.csv"}, "tasks": [{"name": "y"}]},
            r"data file not found: .*missing.csv",
        ),
        ({"balancing": {"method": "nope"}}, r"nope"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, patch, needle):
    cfg = _write(tmp_path, {**BASE, **patch})
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert re.search(needle, _error_line(capsys))


def test_missing_config_and_bad_yaml(tmp_path, capsys):
    assert main(["train", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "config file not found" in _error_line(capsys)
    bad = tmp_path / "broken.yaml"
    bad.write_text("train: [1, 2\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "not valid YAML" in _error_line(capsys)


def _table(tmp_path: Path, text: str, tasks: list[dict]) -> Path:
    (tmp_path / "d.csv").write_bytes(text.encode("latin-1") if "\xff" in text else text.encode())
    return _write(
        tmp_path,
        {
            "data": {
                "source": "table",
                "path": "d.csv",
                "featurizer": {"kind": "ecfp", "bits": 64},
            },
            "tasks": tasks,
            "train": {"steps": 2},
        },
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "smiles,y\n" + "".join(f"{'C' * (i % 5 + 1)}O,\n" for i in range(20)),
            r"task 'y' has no labelled rows",
        ),
        (
            "smiles,y\n" + "".join(f"{'C' * (i % 5 + 1)}O,abc\n" for i in range(20)),
            r"column 'y' row 0: not a number",
        ),
        ("smiles,y\n", r"no rows"),
        ("smiles,y\n" + "".join("C((,1\n" for _ in range(20)), r"row 0: RDKit cannot parse"),
        ("smiles,z\nCO,1\n", r"column\(s\) 'y' not found"),
    ],
)
@pytest.mark.needs("rdkit")
def test_bad_data_is_one_line_exit_2(tmp_path, capsys, text, needle):
    cfg = _table(tmp_path, text, [{"name": "y", "kind": "binary"}])
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert re.search(needle, _error_line(capsys))


@pytest.mark.needs("rdkit")
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    # finite labels (an infinite one is refused on load) whose squared error overflows float32
    rows = "".join(f"{'C' * (i % 7 + 1)}O,{i % 3}\n" for i in range(95)) + "CCN,1e30\n" * 5
    (tmp_path / "d.csv").write_text("smiles,y\n" + rows)
    raw = {"features": False, "targets": False}  # standardised, the labels would be tame
    cfg = _write(tmp_path, {
        "seed": 1,  # the first batch holding a huge label is step 3
        "data": {"source": "table", "path": "d.csv", "featurizer": {"kind": "ecfp", "bits": 64},
                 "standardize": raw},
        "tasks": [{"name": "y", "kind": "regression"}], "train": {"steps": 30, "batch_size": 8, "checkpoint_every": 1, "eval_every": 1},
    })  # fmt: skip
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    line = _error_line(capsys)
    failed_at = re.search(r"step (\d+): the loss of task 'y' is (inf|nan)", line)
    assert failed_at and int(failed_at.group(1)) > 0, line
    ckpt = tmp_path / "run" / "checkpoints"
    last = ckpt / (ckpt / "latest").read_text().strip()
    assert (last / "model.safetensors").is_file() and not (
        tmp_path / "run" / "report.json"
    ).exists()
    assert not list(ckpt.glob(".*tmp"))


def test_existing_output_folder_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    cfg = str(small_tox21(tmp_path))
    for flag in ((), ("--overwrite",), ("--resume",)):  # not polytask's: never replaced
        assert main(["train", cfg, "--out", str(out), "--no-progress", *flag]) == 2
        assert "a folder polytask did not make" in _error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_eval_on_non_run_folder(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a polytask run folder" in _error_line(capsys)
    assert not math.isnan(0.0)
