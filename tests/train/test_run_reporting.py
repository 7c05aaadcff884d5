"""A training job records zero updates in report.json and writes the Gramian log it is asked to."""

import json

import pytest
import yaml

from polytask.build import training
from polytask.cli.main import main
from polytask.jobs.train import run_train
from tests.conftest import small_tox21


def _config(tmp_path, **train):
    cfg = small_tox21(tmp_path, steps=6, eval_every=3, **train)
    data = yaml.safe_load(cfg.read_text())
    data["balancing"] = {"method": "upgrad", "mode": "features"}
    cfg.write_text(yaml.safe_dump(data))
    return cfg


def test_a_normal_run_reports_no_zero_update_and_logs_gramians(tmp_path):
    report = run_train(_config(tmp_path, gramian_log_every=4), tmp_path / "run", progress=False)
    assert report.training["zero_update_steps"] == 0
    logs = tmp_path / "run" / "logs"
    assert (logs / "gramian.safetensors").is_file()
    records = [json.loads(x) for x in (logs / "train.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["present"]) == 3 for r in records)
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["training"]["zero_update_steps"] == 0


def test_a_dead_trunk_shows_in_the_report(tmp_path, monkeypatch):
    import torch

    real = training.make_model

    def dead(*args, **kwargs):
        model = real(*args, **kwargs)
        with torch.no_grad():
            model.trunk[0].bias.fill_(-1e4)  # ReLU: no gradient reaches the trunk
        return model

    monkeypatch.setattr(training, "make_model", dead)
    report = run_train(_config(tmp_path), tmp_path / "run", progress=False)
    assert report.training["zero_update_steps"] == 6


def test_gramian_log_every_zero_writes_no_file_and_negative_is_one_line(tmp_path, capsys):
    run_train(_config(tmp_path, gramian_log_every=0), tmp_path / "off", progress=False)
    assert not (tmp_path / "off" / "logs" / "gramian.safetensors").exists()
    bad = _config(tmp_path, gramian_log_every=-1)
    assert main(["train", str(bad), "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.gramian_log_every" in err[0]
    with pytest.raises(Exception, match="gramian_log_every"):
        run_train(bad, tmp_path / "bad2", progress=False)
