"""``polytask merge``: success path, help, and every kind of bad input (exit 2, nothing left)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from polytask.cli.main import main
from polytask.merging import TaskArithmetic, Ties, merge, open_checkpoint, write_checkpoint


def _state(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "enc.w": torch.randn(6, 4, generator=gen),
        "enc.b": torch.randn(4, generator=gen),
        "classifier.weight": torch.randn(seed + 2, 4, generator=gen),
    }


@pytest.fixture
def job(tmp_path: Path) -> Path:
    write_checkpoint(_state(0), tmp_path / "base")
    for name, seed in (("a", 1), ("b", 2)):
        write_checkpoint(_state(seed), tmp_path / name, max_shard_bytes=64)
    return tmp_path


def _config(root: Path, **overrides) -> Path:
    config = {
        "method": "ties",
        "options": {"density": 0.5, "sign": "count"},
        "base_model": "base",
        "models": ["a", {"path": "b", "weight": 2.0}],
        "filters": {"exclude": ["classifier.*"]},
        "shard_size": "100B",
        "seed": 0,
    }
    config.update(overrides)
    path = root / "merge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") or p.name == "out")


def test_cli_merges_and_records(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["merge", str(_config(job)), "--out", str(job / "out"), "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert printed.out == f"{job / 'out'}\n" and "merged 2 models with ties" in printed.err
    states = [
        {k: v for k, v in _state(s).items() if not k.startswith("classifier")} for s in (0, 1, 2)
    ]
    expected = merge(Ties(density=0.5, sign="count", weights=(1.0, 2.0)), states[0], states[1:])
    with open_checkpoint(job / "out") as reader:
        assert sorted(reader.keys()) == ["classifier.weight", "enc.b", "enc.w"]
        assert all(torch.equal(reader.get(k), v) for k, v in expected.items())
        assert torch.equal(reader.get("classifier.weight"), _state(0)["classifier.weight"])
    info = json.loads((job / "out" / "merge.json").read_text())
    assert info["name"] == "ties" and info["options"]["weights"] == [1.0, 2.0] and info["seed"] == 0
    assert (job / "out" / "model.safetensors.index.json").exists()


def test_cli_overwrite(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (job / "mine").mkdir()
    (job / "mine" / "keep.txt").write_text("mine")
    for flags in ((), ("--overwrite",)):  # a folder polytask did not make is never replaced
        assert main(["merge", str(_config(job)), "--out", str(job / "mine"), *flags]) == 2
        assert "a folder polytask did not make" in capsys.readouterr().err
    assert [p.name for p in (job / "mine").iterdir()] == ["keep.txt"]
    (job / "mine" / "keep.txt").unlink()
    (job / "mine").rmdir()
    assert main(["merge", str(_config(job)), "--out", str(job / "out"), "--no-progress"]) == 0
    assert main(["merge", str(_config(job)), "--out", str(job / "out")]) == 2
    assert "already exists and is not empty; use --overwrite" in capsys.readouterr().err
    cfg = _config(job, method="task_arithmetic", options={"lam": 0.5})
    assert main(["merge", str(cfg), "--out", str(job / "out"), "--overwrite", "--no-progress"]) == 0
    expected = merge(
        TaskArithmetic(lam=0.5, weights=(1.0, 2.0)),
        _state(0),
        [_state(1), _state(2)],
        exclude=["classifier.*"],
    )
    assert torch.equal(open_checkpoint(job / "out").get("enc.w"), expected["enc.w"])
    assert _leftovers(job) == ["out"]


def test_help_lists_methods_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", "--help"]) == 0
    text = capsys.readouterr().out
    for name in (
        "ties",
        "dare_ties",
        "breadcrumbs",
        "della",
        "slerp",
        "model_stock",
        "task_arithmetic",
    ):
        assert f"  {name}:" in text
    assert "topk: Literal['tensor', 'model'] = 'tensor'" in text and "rescale:" in text


def _corrupt(job: Path, kind: str) -> None:
    a = _state(1)
    if kind == "missing_key":
        del a["enc.b"]
    elif kind == "shape":
        a["enc.b"] = torch.zeros(5)
    elif kind == "dtype":
        a["enc.b"] = a["enc.b"].double()
    elif kind == "nan":
        a["enc.w"][2, 1] = float("nan")
    elif kind == "extra_key":
        a["enc.extra"] = torch.zeros(1)
    write_checkpoint(a, job / "a", overwrite=True)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (
            "missing_key",
            "tensor 'enc.b' is in the base model (.*base.*) but missing from .*/a/model.safetensors",
        ),
        (
            "shape",
            r"tensor 'enc.b' has shape \(4,\) in .*base.* but \(5,\) in .*/a/model.safetensors",
        ),
        ("dtype", "tensor 'enc.b' has dtype torch.float32 in .*base.* but torch.float64 in .*/a/"),
        ("nan", "tensor 'enc.w' in .*/a/model.safetensors contains NaN or Inf"),
        ("extra_key", "tensor 'enc.extra' is in .*/a/model.safetensors but not in the base model"),
    ],
)
def test_disagreeing_or_bad_checkpoints(
    job: Path, kind: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _corrupt(job, kind)
    assert main(["merge", str(_config(job)), "--out", str(job / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    import re

    assert re.search(message, err), err
    assert _leftovers(job) == []


def test_truncated_checkpoint(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = sorted((job / "b").glob("*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[:-3])
    assert main(["merge", str(_config(job)), "--out", str(job / "out")]) == 2
    err = capsys.readouterr().err
    assert "is truncated" in err and shard.name in err and err.count("\n") == 1
    assert _leftovers(job) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"method": "tiez"}, "unknown merge method 'tiez'"),
        ({"options": {"densty": 0.5}}, "unknown option for method 'ties'"),
        ({"options": {"density": "lots"}}, "options.density"),
        ({"options": {"density": 1.5}}, "'density' must lie in"),
        ({"method": "slerp", "options": {}, "models": ["a", "b"]}, "exactly one fine-tuned model"),
        (
            {"method": "average", "options": {}, "models": [{"path": "a", "density": 0.3}]},
            "no per-model density",
        ),
        ({"colour": "red"}, "key 'colour': unknown key"),
        ({"shard_size": "big"}, "shard_size"),
        ({"base_model": "nowhere"}, "nowhere does not exist"),
        ({"buffers": "recompute"}, "'recompute' re-estimates running statistics"),
        ({"buffers": "extrapolate"}, "buffers"),
        ({"options": {"combine": "max"}}, "options.combine"),
        ({"filters": {"include": ["nothing.*"]}}, "select no floating tensor to merge"),
    ],
)
def test_bad_configs(
    job: Path, overrides: dict, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["merge", str(_config(job, **overrides)), "--out", str(job / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert _leftovers(job) == []


def test_pickled_inputs_need_trust(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (job / "p").mkdir()
    torch.save(_state(1), job / "p" / "pytorch_model.bin")
    cfg = _config(job, models=["p", "b"])
    assert main(["merge", str(cfg), "--out", str(job / "out")]) == 2
    assert "refusing" in capsys.readouterr().err
    cfg = _config(job, models=["p", "b"], trust_pickle=True)
    assert main(["merge", str(cfg), "--out", str(job / "out"), "--no-progress"]) == 0


def test_progress_bar_run_gives_the_same_output(job: Path) -> None:
    from polytask.merging import merge_checkpoints

    method = Ties(density=0.5)
    paths = [job / "a", job / "b"]
    quiet = merge_checkpoints(method, job / "base", paths, job / "q", exclude=["classifier.*"])
    shown = merge_checkpoints(
        method, job / "base", paths, job / "p", exclude=["classifier.*"], progress=True
    )
    with open_checkpoint(quiet) as a, open_checkpoint(shown) as b:
        assert all(torch.equal(a.get(k), b.get(k)) for k in a)


def test_training_checkpoint_layouts_are_unwrapped_when_asked(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (job / "n").mkdir()
    nested = {f"module.{k}": v for k, v in _state(1).items()}
    torch.save({"best_prec1": 0.9, "state_dict": nested}, job / "n" / "pytorch_model.bin")
    cfg = _config(job, models=["n", "b"], trust_pickle=True)
    assert main(["merge", str(cfg), "--out", str(job / "out")]) == 2
    err = capsys.readouterr().err
    assert "nested under 'state_dict'" in err and err.count("\n") == 1
    cfg = _config(job, models=["n", "b"], trust_pickle=True, unwrap="state_dict")
    assert main(["merge", str(cfg), "--out", str(job / "out")]) == 2
    err = capsys.readouterr().err
    assert "strip_prefix: 'module.'" in err and err.count("\n") == 1
    cfg = _config(
        job, models=["n", "b"], trust_pickle=True, unwrap="state_dict", strip_prefix="module.",
        options={"density": 0.5, "combine": "sum"},
    )  # fmt: skip
    assert main(["merge", str(cfg), "--out", str(job / "out"), "--no-progress"]) == 0
    info = json.loads((job / "out" / "merge.json").read_text())
    assert info["unwrap"] == "state_dict" and info["strip_prefix"] == "module."
    assert info["options"]["combine"] == "sum" and info["buffers"] == "average"
    assert info["merged_tensors"] == 2
