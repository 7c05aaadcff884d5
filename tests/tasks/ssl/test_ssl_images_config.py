"""Image data, the conv trunk and image pretexts from a config, through the CLI; bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from polytask.cli.main import main
from tests.conftest import crash_at_step, needs, small_tox21

needs("sklearn")


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _digits(tmp_path: Path, **over: Any) -> Path:
    cfg: dict[str, Any] = {
        "seed": 0,
        "data": {"source": "digits"},
        "model": {"trunk": {"kind": "conv", "channels": [8, 16], "out_dim": 32}},
        "auxiliary": [
            {"name": "rot", "pretext": "rotation"},
            {"name": "mae", "pretext": "patch_mae", "patch": 2, "mask_ratio": 0.5, "weight": 0.5},
            {
                "name": "views",
                "pretext": "contrastive",
                "dim": 16,
                "augment": [{"kind": "random_crop", "pad": 1}, {"kind": "horizontal_flip"}],
            },
        ],
        "train": {"steps": 40, "batch_size": 32, "eval_every": 40, "optimizer": {"lr": 0.005}},
    }
    cfg.update(over)
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_digits_config_trains_with_image_pretexts(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", str(_digits(tmp_path)), "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    test = report["metrics"]["test"]
    assert set(test) >= {"label", "rot", "mae", "views"}
    assert test["label"]["accuracy"] > 0.4  # 10 classes: chance is 0.1
    assert test["rot"]["accuracy"] > 0.3  # 4 rotations: chance is 0.25
    assert 0.0 < test["mae"]["rmse"] < 0.5


def test_labels_key_keeps_a_stratified_draw(tmp_path: Path) -> None:
    from polytask.build.data import prepare_data
    from polytask.config.load import load_config
    from polytask.config.schema import TrainConfig

    path = _digits(tmp_path, data={"source": "digits", "labels": 50}, auxiliary=None)
    prepared = prepare_data(load_config(TrainConfig, path), tmp_path)
    y = prepared.splits["train"].targets["label"]
    kept = y[~torch.isnan(y)]
    assert len(kept) == 50 and torch.bincount(kept.long()).tolist() == [5] * 10
    assert len(prepared.splits["train"]) > 1000  # unlabelled images stay for the pretexts


def test_sla_from_config_trains_with_a_rotation_auxiliary(tmp_path: Path) -> None:
    out = tmp_path / "sla"
    data = {"source": "digits", "sla": True, "self_distill": True}
    aux = [{"name": "rot", "pretext": "rotation"}]
    path = _digits(tmp_path, data=data, auxiliary=aux)
    assert main(["train", str(path), "--out", str(out), "--no-progress"]) == 0
    test = json.loads((out / "report.json").read_text())["metrics"]["test"]
    assert test["label"]["accuracy"] > 0.4  # read from the self-distilled head, one pass
    assert test["rot"]["accuracy"] > 0.25


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: _tox21_with(p, {"name": "r", "pretext": "rotation"}), "fits image inputs only"),
        (
            lambda p: _tox21_with(
                p, {"name": "v", "pretext": "contrastive", "augment": [{"kind": "random_crop"}]}
            ),
            "'random_crop' does not fit fingerprint",
        ),
        (
            lambda p: _digits(p, model={"trunk": {"kind": "mlp", "hidden": [16]}}),
            "image data needs trunk kind 'conv'",
        ),
        (
            lambda p: _digits(p, data={"source": "fashion_mnist", "root": str(p / "none")}),
            "dataset-fashion-mnist",
        ),
        (lambda p: _digits(p, data={"source": "digits", "labels": 5000}), "5000 >"),
        (
            lambda p: _digits(p, data={"source": "digits", "self_distill": True}),
            "key 'self_distill': needs 'sla: true'",
        ),
    ],
)
def test_bad_image_configs_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, message: str
) -> None:
    path = edit(tmp_path)
    assert main(["train", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert message in _error_line(capsys)


def _tox21_with(tmp_path: Path, aux: dict[str, Any]) -> Path:
    path = small_tox21(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["auxiliary"] = [aux]
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("sla", [False, True])
def test_resume_with_image_pretexts_is_bit_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sla: bool
) -> None:
    from safetensors.torch import load_file

    train = {"steps": 8, "batch_size": 16, "eval_every": 4, "checkpoint_every": 2}
    data = {"source": "digits", "sla": sla, "labels": 100}
    cfg = _digits(tmp_path, data=data, train=train)
    ref = tmp_path / "ref"
    assert main(["train", str(cfg), "--out", str(ref), "--no-progress"]) == 0
    run = tmp_path / "run"
    crash_at_step(cfg, run, 5, monkeypatch)
    assert main(["train", str(cfg), "--out", str(run), "--no-progress", "--resume"]) == 0
    a = load_file(str(ref / "checkpoints" / "step-0000008" / "model.safetensors"))
    b = load_file(str(run / "checkpoints" / "step-0000008" / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert (ref / "logs" / "train.jsonl").read_text() == (run / "logs" / "train.jsonl").read_text()
