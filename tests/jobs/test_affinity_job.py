"""``polytask affinity``: the bundled example end to end, the Gramian probe, and bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from polytask.affinity.probe import GradientProbe
from polytask.balancing import Balancer, UPGrad
from polytask.cli.main import main
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import Group
from tests.conftest import REPO, small_tox21

EXAMPLE = REPO / "examples" / "affinity" / "tox21.yaml"


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def _run(cfg: Path, out: Path, *extra: str) -> int:
    return main(["affinity", str(cfg), "--out", str(out), "--no-progress", *extra])


def _small(tmp_path: Path, affinity: dict, **data: object) -> Path:
    path = small_tox21(tmp_path, steps=6)
    cfg = yaml.safe_load(path.read_text())
    cfg["data"].update(data)
    cfg["affinity"] = affinity
    path.write_text(yaml.safe_dump(cfg))
    return path


def _symmetric_unit_diagonal(values: list[list[float]]) -> torch.Tensor:
    c = torch.tensor(values, dtype=torch.float64)
    assert torch.allclose(c, c.T, atol=1e-12)
    assert torch.allclose(torch.diagonal(c), torch.ones(len(c), dtype=torch.float64))
    assert bool((c.abs() <= 1 + 1e-12).all())
    return c


@pytest.mark.needs("rdkit", "sklearn", "matplotlib")  # Lasso selection, heatmaps
def test_example_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["affinity"].update(steps=6, lookahead_every=3)  # small budget, same recipe
    path = tmp_path / "tox21.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "aff"
    assert _run(path, out) == 0
    printed = capsys.readouterr()
    assert printed.out == f"{out}\n"  # stdout: the folder written; the summary on stderr
    summary = printed.err
    report = json.loads((out / "affinity.json").read_text())
    names = report["metadata"]["tasks"]
    assert len(names) == 12 and report["metadata"]["steps"] == 6
    for name in ("gradient", "lookahead"):
        png = (out / f"heatmap_{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    _symmetric_unit_diagonal(report["matrices"]["gradient"]["values"])
    grad = report["metadata"]["gradient"]
    assert grad["source"] == "balancer" and grad["steps_measured"] == 6
    look = report["metadata"]["lookahead"]
    assert look["cost"]["measurements"] == 2  # steps 3 and 6
    assert look["cost"]["forwards"] == 2 * 13 and look["cost"]["backwards"] == 2 * 12
    assert look["lr"] == 0.1 and look["extra_cost_fraction"] > 0
    for matrix in ("gradient", "lookahead"):
        for g in (2, 3, 4):
            grouping = report["groupings"][f"{matrix}/G={g}"]
            groups = grouping["best"]
            assert len(groups) == g and sorted(t for grp in groups for t in grp) == sorted(names)
            assert f"G={g}: " + " | ".join(", ".join(grp) for grp in groups) in summary
    rankings = [r for r in report["source_rankings"] if r["method"] == "gradient"]
    assert len(rankings) == 12
    first = rankings[0]
    c = report["matrices"]["gradient"]["values"]
    t = names.index(first["target"])
    assert first["ranking"][0]["score"] == max(c[i][t] for i in range(12) if i != t)
    assert len(report["lasso"]) == 12
    assert "gradient: top pairs:" in summary and "lookahead cost:" in summary


@pytest.mark.needs("sklearn", "matplotlib")
def test_probe_measures_gradients_when_balancing_has_no_gramian(tmp_path: Path) -> None:
    cfg = _small(tmp_path, {"measures": ["gradient"], "groups": [2], "targets": ["SR-ARE"]})
    out = tmp_path / "aff"
    assert _run(cfg, out) == 0
    report = json.loads((out / "affinity.json").read_text())
    grad = report["metadata"]["gradient"]
    assert (grad["source"], grad["probe_mode"], grad["steps_measured"]) == ("probe", "features", 6)
    _symmetric_unit_diagonal(report["matrices"]["gradient"]["values"])
    assert [r["target"] for r in report["source_rankings"]] == ["SR-ARE"]
    assert "lookahead" not in report["matrices"]


@pytest.mark.parametrize("mode", ["features", "exact"])
def test_probe_gramian_equals_the_balancers(mode: str) -> None:
    torch.manual_seed(0)
    ts = TaskSet([Task("a", "binary"), Task("b", "binary"), Task("c", "regression")])
    model = build_model(mlp_trunk(6, [5], dropout=0.0), ts.tasks, 5)
    x = torch.randn(10, 6)
    targets = {
        "a": torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 0.0]),
        "b": torch.tensor([1, 1, 0, 0, 1, float("nan"), 0, 1, 0, 1]),
        "c": torch.randn(10),
    }
    if mode == "features":
        batch = [Group(x, targets)]
    else:  # each task its own inputs: gradients w.r.t. the shared parameters
        batch = [
            Group(x[3 * i : 3 * i + 4], {n: targets[n][3 * i : 3 * i + 4]})
            for i, n in enumerate("abc")
        ]
    probe = GradientProbe(model, ts, None)  # type: ignore[arg-type]
    gramian, names = probe.gramian(batch)
    assert names == ("a", "b", "c") and probe.mode == (
        "features" if mode == "features" else "parameters"
    )
    model.eval()
    losses, feats = [], []
    for group in batch:
        z = model.forward_features(group.inputs)
        feats.append(z)
        outs = model.forward_heads(z, list(group.targets))
        losses += [ts[n].compute_loss(outs[n], group.targets[n]) for n in group.targets]
    features = feats[0] if mode == "features" else None
    ref = Balancer(UPGrad(), mode=mode).backward(
        torch.stack(losses), model.shared_parameters(), features=features
    )
    assert ref.gramian is not None
    assert torch.allclose(gramian, ref.gramian.to(torch.float64), rtol=1e-5, atol=1e-9)


def _checkpoints(tmp_path: Path, wrong_base: bool = False) -> dict:
    base = {"w": torch.zeros(2), "b": torch.zeros(1)}
    save_file(base, tmp_path / "base.safetensors")
    deltas = {"x": [1.0, 0.0], "y": [1.0, 1.0], "z": [-1.0, 0.0]}
    for name, d in deltas.items():
        tensors = {"w": torch.tensor(d), "b": torch.zeros(1)}
        if wrong_base and name == "z":
            tensors["w"] = torch.zeros(3)
        save_file(tensors, tmp_path / f"{name}.safetensors")
    return {"base": "base.safetensors", "tasks": {n: f"{n}.safetensors" for n in deltas}}


@pytest.mark.needs("matplotlib")  # its heatmap
def test_task_vector_similarity_from_checkpoints(tmp_path: Path) -> None:
    cfg = tmp_path / "tv.yaml"
    ckpts = _checkpoints(tmp_path)
    cfg.write_text(
        yaml.safe_dump({"affinity": {"measures": [], "groups": [2], "checkpoints": ckpts}})
    )
    out = tmp_path / "aff"
    assert _run(cfg, out) == 0
    report = json.loads((out / "affinity.json").read_text())
    c = _symmetric_unit_diagonal(report["matrices"]["task_vectors"]["values"])
    s = 1 / math.sqrt(2)  # tau_x = (1, 0), tau_y = (1, 1), tau_z = (-1, 0)
    expected = torch.tensor([[1, s, -1], [s, 1, -s], [-1, -s, 1]], dtype=torch.float64)
    assert torch.allclose(c, expected, atol=1e-12)
    assert report["groupings"]["task_vectors/G=2"]["best"] == [["x", "y"], ["z"]]
    assert (out / "heatmap_task_vectors.png").is_file()


@pytest.mark.parametrize(
    ("affinity", "data", "needle"),
    [
        ({"groups": [2]}, {"tasks": ["NR-AhR"]}, r"at least 2 tasks, .* has 1$"),
        ({"groups": [2, 4]}, {}, r"affinity.groups: cannot split the 3 tasks of .* into 4 groups"),
        ({"targets": ["NR-XX"]}, {}, r"affinity.targets: unknown task 'NR-XX'"),
        ({"grups": [2]}, {}, r"key 'affinity.grups': unknown key"),
        ({"measures": ["gradient", "tag"]}, {}, r"key 'affinity.measures.1'"),
        ({"measures": []}, {}, r"nothing to measure"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], affinity: dict, data: dict, needle: str
) -> None:
    cfg = _small(tmp_path, affinity, **data)
    assert _run(cfg, tmp_path / "aff") == 2
    assert re.search(needle, _error_line(capsys))
    assert not (tmp_path / "aff").exists()


def test_checkpoints_from_different_bases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "tv.yaml"
    ckpts = _checkpoints(tmp_path, wrong_base=True)
    cfg.write_text(
        yaml.safe_dump({"affinity": {"measures": [], "groups": [2], "checkpoints": ckpts}})
    )
    assert _run(cfg, tmp_path / "aff") == 2
    assert re.search(r"'w'.*z\.safetensors", _error_line(capsys))
    ckpts["tasks"] = {"x": "x.safetensors", "y": "y.safetensors"}
    cfg.write_text(
        yaml.safe_dump({"affinity": {"measures": [], "groups": [3], "checkpoints": ckpts}})
    )
    assert _run(cfg, tmp_path / "aff") == 2
    assert "cannot split the 2 tasks of affinity.checkpoints.tasks into 3 groups" in _error_line(
        capsys
    )


@pytest.mark.needs("matplotlib")
def test_existing_output_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "tv.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"affinity": {"measures": [], "groups": [2], "checkpoints": _checkpoints(tmp_path)}}
        )
    )
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    for flags in ((), ("--overwrite",)):  # a folder polytask did not make is never replaced
        assert _run(cfg, mine, *flags) == 2
        assert "is a folder polytask did not make" in _error_line(capsys)
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    out = tmp_path / "aff"
    assert _run(cfg, out) == 0
    assert capsys.readouterr().out == f"{out}\n"  # the summary went to stderr
    assert _run(cfg, out) == 2
    assert "already exists and is not empty; use --overwrite to replace it" in _error_line(capsys)
    assert _run(cfg, out, "--overwrite") == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [".polytask", "affinity.json", "heatmap_task_vectors.png"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
