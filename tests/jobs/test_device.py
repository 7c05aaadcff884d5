"""Devices: ``device:`` resolution everywhere; training, balancing and resume on CUDA where present."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import polytask.balancing as pb
from polytask._core import PolytaskError, resolve_device
from polytask.build.balancing import build_method
from polytask.config.balancing import BALANCING_METHODS
from tests.conftest import crash_at_step, small_tox21

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    with pytest.raises(PolytaskError, match="'tpu'"):
        resolve_device("tpu")
    with pytest.raises(PolytaskError, match="'mps'"):
        resolve_device("mps")
    if not CUDA:
        with pytest.raises(PolytaskError, match="CUDA is not available here"):
            resolve_device("cuda")
    count = torch.cuda.device_count() if CUDA else 0
    with pytest.raises(PolytaskError, match="CUDA device" if CUDA else "not available"):
        resolve_device(f"cuda:{count}")


def test_cli_refuses_a_missing_gpu(tmp_path, capsys) -> None:
    if CUDA:
        pytest.skip("this machine has a GPU")
    from polytask.cli.main import main

    cfg = small_tox21(tmp_path, steps=2)
    data = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**data, "device": "cuda"}))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CUDA is not available here" in err and "\n" not in err
    assert not (tmp_path / "run" / "report.json").exists()


def _tiny(device: torch.device, k: int = 4):
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh()).double().to(device)
    head = torch.nn.Linear(16, k).double().to(device)
    x = torch.randn(12, 6, dtype=torch.float64).to(device)
    y = torch.randn(12, k, dtype=torch.float64).to(device)
    return trunk, head, x, y


# GradDrop draws its masks from the generator of the Jacobian's device
_SAME_DRAWS = sorted(set(BALANCING_METHODS) - {"graddrop"})


@needs_cuda
@pytest.mark.parametrize("mode", ["features", "exact"])
@pytest.mark.parametrize("name", sorted(BALANCING_METHODS))
def test_every_method_on_cuda_matches_the_cpu(name: str, mode: str) -> None:
    cls = BALANCING_METHODS[name]
    if mode not in cls.modes:
        pytest.skip(f"{name} has no {mode} mode")
    grads = {}
    for device in (torch.device("cpu"), torch.device("cuda", 0)):
        trunk, head, x, y = _tiny(device)
        bal = pb.Balancer(build_method(name, {}, n_tasks=4), mode=mode).to(device)
        torch.manual_seed(1)
        for _ in range(3):  # stateful methods: their state must live on the device too
            trunk.zero_grad()
            head.zero_grad()
            z = trunk(x)
            losses = ((head(z) - y) ** 2).mean(0)
            res = bal.backward(losses, trunk.parameters(), features=z, columns=[0, 1, 2, 3])
        assert res.weights.device == device
        grads[device.type] = [p.grad.cpu() for p in (*trunk.parameters(), *head.parameters())]
        for b in bal.buffers():
            assert b.device == device or b.numel() <= 64, f"{name}: a large buffer off the device"
    if name in _SAME_DRAWS:
        for g_cpu, g_cuda in zip(grads["cpu"], grads["cuda"]):
            torch.testing.assert_close(g_cuda, g_cpu, rtol=1e-6, atol=1e-9)
    else:
        assert all(torch.isfinite(g).all() for g in grads["cuda"])


def _report(out) -> dict:
    return json.loads((out / "report.json").read_text())


@needs_cuda
@pytest.mark.parametrize("balancing", [None, {"method": "upgrad", "mode": "features"}])
def test_tox21_run_on_cuda_agrees_with_the_cpu(tmp_path, balancing) -> None:
    from polytask.cli.main import main

    scores = {}
    for device in ("cpu", "cuda"):
        cfg = small_tox21(tmp_path, steps=60)
        data = {**yaml.safe_load(cfg.read_text()), "device": device}
        if balancing:
            data["balancing"] = balancing
        cfg.write_text(yaml.safe_dump(data))
        out = tmp_path / device
        assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 0
        report = _report(out)
        assert report["training"]["device"] == ("cuda:0" if device == "cuda" else "cpu")
        test = report["metrics"]["test"]
        scores[device] = {t: m["roc_auc"] for t, m in test.items() if "roc_auc" in m}
    assert scores["cpu"].keys() == scores["cuda"].keys()
    for task, value in scores["cpu"].items():
        assert abs(scores["cuda"][task] - value) < 5e-3, (task, scores)


@needs_cuda
def test_resume_on_cuda_is_bit_identical(tmp_path, monkeypatch) -> None:
    from safetensors.torch import load_file

    from polytask.cli.main import main

    cfg = small_tox21(tmp_path, steps=40, checkpoint_every=5, eval_every=10)
    data = {**yaml.safe_load(cfg.read_text()), "device": "cuda", "balancing": {"method": "famo"}}
    cfg.write_text(yaml.safe_dump(data))
    assert main(["train", str(cfg), "--out", str(tmp_path / "ref"), "--no-progress"]) == 0
    crash_at_step(cfg, tmp_path / "run", 23, monkeypatch)
    assert (
        main(["train", str(cfg), "--out", str(tmp_path / "run"), "--resume", "--no-progress"]) == 0
    )
    for name in ("ref", "run"):
        assert (tmp_path / name / "report.json").exists()
    ref = load_file(str(tmp_path / "ref" / "checkpoints" / "best" / "model.safetensors"))
    run = load_file(str(tmp_path / "run" / "checkpoints" / "best" / "model.safetensors"))
    for k in ref:
        assert ref[k].equal(run[k]), k
    assert _report(tmp_path / "ref")["metrics"] == _report(tmp_path / "run")["metrics"]
