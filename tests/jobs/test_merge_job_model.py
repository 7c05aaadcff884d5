"""``polytask merge`` with the whole-model methods (TALL masks, Consensus): outputs equal the
Python API's, everything is recorded, and bad input stops with one line and no output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from polytask.cli.main import main
from polytask.merging import open_checkpoint, write_checkpoint
from polytask.merging.model import ConsensusMerge, TallMasks, unpack_mask


def _state(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "enc.w": torch.randn(6, 4, generator=gen),
        "enc.b": torch.randn(4, generator=gen),
        "enc.steps": torch.tensor([seed]),  # not floating: copied from the base
        "classifier.weight": torch.randn(2, 4, generator=gen),
    }


@pytest.fixture
def job(tmp_path: Path) -> Path:
    write_checkpoint(_state(0), tmp_path / "base")
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        write_checkpoint(_state(seed), tmp_path / name)
    return tmp_path


def _config(root: Path, **overrides) -> Path:
    config = {
        "method": "tall_masks",
        "options": {"lambdas": [0.4, 0.6, 1.0]},
        "base_model": "base",
        "models": ["a", "b", "c"],
        "filters": {"exclude": ["classifier.*"]},
    }
    config.update(overrides)
    path = root / "merge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _selected(seed: int) -> dict[str, torch.Tensor]:
    return {k: v for k, v in _state(seed).items() if k.startswith("enc.") and v.is_floating_point()}


def _run(job: Path, capsys: pytest.CaptureFixture[str], **overrides) -> int:
    code = main(["merge", str(_config(job, **overrides)), "--out", str(job / "out")])
    if code == 0:
        capsys.readouterr()
    return code


def test_tall_masks_from_the_cli_equal_the_api(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(job, capsys) == 0
    expected = TallMasks(lambdas=(0.4, 0.6, 1.0)).merge(
        _selected(0), [_selected(s) for s in (1, 2, 3)]
    )
    with open_checkpoint(job / "out") as reader:
        got = {k: reader.get(k) for k in reader}
        recorded = json.loads(reader.metadata["polytask.merge"])
    for key, value in expected.state.items():
        assert torch.equal(got[key], value), key
    assert torch.equal(got["classifier.weight"], _state(0)["classifier.weight"])  # excluded
    assert torch.equal(got["enc.steps"], _state(0)["enc.steps"])  # non-floating
    info = json.loads((job / "out" / "merge.json").read_text())
    assert info["name"] == "tall_masks" and info["method"] == "TallMasks"
    assert info["options"]["lambdas"] == [0.4, 0.6, 1.0] and info["options"]["strict"] is False
    assert info["outcome"]["mask_density"] == expected.metadata["mask_density"]
    assert info["outcome"]["lambdas"] == [0.4, 0.6, 1.0]
    assert info["merged_tensors"] == 2 and info["copied_tensors"] == 2
    assert recorded["outcome"]["method"] == "tall_masks"
    masks = load_file(job / "out" / info["extra_tensors"])
    assert set(masks) == set(expected.tensors)
    for key, packed in expected.tensors.items():
        assert torch.equal(masks[key], packed)
    # the packed mask of task 2 on enc.w is |τ| ≥ λ|τ_MTL − τ|, worked out here directly
    taus = [_selected(s)["enc.w"] - _selected(0)["enc.w"] for s in (1, 2, 3)]
    rule = taus[2].abs() >= 1.0 * (sum(taus) - taus[2]).abs()
    assert torch.equal(unpack_mask(masks["mask.2.enc.w"], (6, 4)), rule)


def test_consensus_ties_from_the_cli_equals_the_api(
    job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {"k": 1, "combine": "ties", "ties_density": 0.5, "lambdas": 0.5, "scaling": 0.8}
    assert _run(job, capsys, method="consensus", options=options, dtype="float64") == 0
    expected = ConsensusMerge(k=1, combine="ties", ties_density=0.5, lambdas=0.5, scaling=0.8)
    outcome = expected.merge(_selected(0), [_selected(s) for s in (1, 2, 3)])
    with open_checkpoint(job / "out") as reader:
        for key, value in outcome.state.items():
            assert reader.dtype(key) == torch.float64
            assert torch.equal(reader.get(key), value.double()), key
    info = json.loads((job / "out" / "merge.json").read_text())
    assert info["outcome"]["usage_histogram"] == outcome.metadata["usage_histogram"]
    assert info["outcome"]["combine"] == "ties" and info["options"]["k"] == 1
    assert "extra_tensors" not in info and not (job / "out" / "merge_tensors.safetensors").exists()


def test_help_lists_whole_model_methods(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", "--help"]) == 0
    text = capsys.readouterr().out
    assert "  tall_masks:" in text and "  consensus:" in text
    assert "k: int = 2" in text and "combine: Literal['task_arithmetic', 'ties']" in text
    assert "fisher (FisherMerge, data.split default train)" in text
    assert "adamerging (AdaMerging, data.split default test)" in text and "run:" in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"method": "fisher", "options": {}}, "needs a model and per-task data"),
        ({"method": "consensus", "options": {"k": "two"}}, "options.k"),
        ({"method": "consensus", "options": {"k": -1}}, "k must be an integer"),
        ({"options": {"combine": "mean"}}, "options.combine"),
        ({"options": {"lambdas": [0.4, 0.6]}}, "3 tasks"),
        ({"options": {"alpha": 1}}, "unknown option for method 'tall_masks'"),
        ({"models": ["a", {"path": "b", "weight": 2.0}]}, "no per-model weight"),
        ({"filters": {"include": ["nothing.*"]}}, "select no floating tensor"),
    ],
)
def test_bad_whole_model_configs(
    job: Path, overrides: dict, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(job, capsys, **overrides) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: "), err
    assert not (job / "out").exists()


def test_bad_checkpoints_and_existing_output(job: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _state(1)
    bad["enc.w"][0, 0] = float("inf")
    write_checkpoint(bad, job / "a", overwrite=True)
    assert _run(job, capsys) == 2
    err = capsys.readouterr().err
    assert re.search(r"tensor 'enc.w' in .*/a/model.safetensors contains NaN or Inf", err), err
    assert not (job / "out").exists()
    write_checkpoint(_state(1), job / "a", overwrite=True)
    assert _run(job, capsys) == 0
    assert _run(job, capsys) == 2
    assert "already exists" in capsys.readouterr().err
    code = main(["merge", str(_config(job)), "--out", str(job / "out"), "--overwrite"])
    assert code == 0
