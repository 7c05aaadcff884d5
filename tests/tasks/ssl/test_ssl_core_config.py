"""Auxiliary tasks from a config, through the CLI: a small Tox21 run, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from safetensors.torch import load_file

from polytask.cli.main import main
from tests.conftest import crash_at_step, small_tox21

AUX = [
    {"name": "recon", "pretext": "masked_features", "mask_ratio": 0.3, "weight": 0.5},
    {
        "name": "views",
        "pretext": "contrastive",
        "dim": 16,
        "augment": [{"kind": "bit_dropout", "p": 0.2}, {"kind": "bit_flip", "p": 0.01}],
    },
]


def _config(tmp_path: Path, aux: Any = AUX, **train: Any) -> Path:
    path = small_tox21(tmp_path, **train)
    data = yaml.safe_load(path.read_text())
    data["auxiliary"] = aux
    path.write_text(yaml.safe_dump(data))
    return path


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_train_with_auxiliary_tasks_reports_them_apart(tmp_path: Path) -> None:
    cfg = _config(tmp_path, steps=8, eval_every=4)
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    aux = {t["name"]: t for t in report["tasks"] if t["auxiliary"]}
    assert set(aux) == {"recon", "views"}
    assert aux["recon"]["kind"] == "reconstruction" and aux["views"]["kind"] == "contrastive"
    test = report["metrics"]["test"]
    assert set(test["recon"]) == {"rmse", "mae", "r2"} and set(test["views"]) == {"retrieval_acc"}
    main_tasks = ["NR-AhR", "SR-ARE", "SR-MMP"]
    mean = sum(test[t]["roc_auc"] for t in main_tasks) / 3
    assert report["means"]["test"]["roc_auc"] == pytest.approx(mean)
    assert "rmse" not in report["means"]["test"]  # only auxiliary tasks have it
    assert "auxiliary tasks excluded" in report["selection"]["description"]
    # every training step logs the two self-supervised losses next to the supervised ones
    steps = [json.loads(x) for x in (out / "logs" / "train.jsonl").read_text().splitlines()]
    assert len(steps) == 8 and all(
        set(s["losses"]) == {*main_tasks, "recon", "views"} for s in steps
    )
    # the contrastive head has the configured width; the reconstruction head one output per bit
    weights = load_file(str(out / "checkpoints" / "best" / "model.safetensors"))
    assert weights["heads.linear.weight"].shape[0] == 3 + 512 + 16
    # re-evaluation regenerates the same fixed pretext data, so it reproduces the metrics
    assert main(["eval", str(out)]) == 0
    again = json.loads((out / "eval.json").read_text())["metrics"]["test"]
    assert again["views"] == test["views"] and again["recon"] == test["recon"]


def test_resume_with_auxiliary_tasks_is_bit_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, steps=8, eval_every=4, checkpoint_every=2)
    ref = tmp_path / "ref"
    assert main(["train", str(cfg), "--out", str(ref), "--no-progress"]) == 0
    # a run that crashes before its 6th step (after the checkpoint of step 4), then resumed
    run = tmp_path / "run"
    crash_at_step(cfg, run, 5, monkeypatch)
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-0000004"
    assert main(["train", str(cfg), "--out", str(run), "--no-progress", "--resume"]) == 0
    for name in ("step-0000008", "best"):
        a = load_file(str(ref / "checkpoints" / name / "model.safetensors"))
        b = load_file(str(run / "checkpoints" / name / "model.safetensors"))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    la = (ref / "logs" / "train.jsonl").read_text().splitlines()
    lb = (run / "logs" / "train.jsonl").read_text().splitlines()
    assert la == lb


@pytest.mark.parametrize(
    ("aux", "needle"),
    [
        (
            [
                {
                    "name": "v",
                    "pretext": "contrastive",
                    "augment": [{"kind": "gaussian_noise", "std": 0.1}],
                }
            ],
            "augmentation 'gaussian_noise' does not fit fingerprint inputs",
        ),
        ([{"name": "v", "pretext": "jigsaw"}], "unknown pretext 'jigsaw'"),
        (
            [{"name": "r", "pretext": "masked_features", "ratio": 0.3}],
            "key 'ratio': unknown option",
        ),
        ([{"name": "r", "pretext": "masked_features", "mask_ratio": "a"}], "key 'mask_ratio'"),
        ([{"name": "r", "pretext": "masked_features", "mask_ratio": 1.5}], "mask_ratio must be in"),
        ([{"name": "SR-ARE", "pretext": "masked_features"}], "name of a supervised task"),
        (
            [{"name": "r", "pretext": "masked_features", "modality": "ecfp"}],
            "modality 'ecfp' named, but the inputs are one tensor",
        ),
        ([{"name": "v", "pretext": "contrastive"}], "key 'augment': list at least one"),
        (
            [{"name": "v", "pretext": "contrastive", "augment": [{"kind": "blur"}]}],
            "unknown augmentation 'blur'",
        ),
        ([{"name": "v", "pretext": "contrastive", "dim": 1}], "auxiliary.0.dim"),
        ([{"pretext": "contrastive"}], "auxiliary.0.name"),
    ],
)
def test_bad_auxiliary_config_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], aux: Any, needle: str
) -> None:
    cfg = _config(tmp_path, aux=aux, steps=2)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    line = _error_line(capsys)
    assert needle in line, line
