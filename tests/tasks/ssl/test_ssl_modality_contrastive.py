"""Cross-modal contrastive pretext: single-modality views, partner targets, config run, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from polytask._core import PolytaskError
from polytask.cli.main import main
from polytask.models import MultiModalTrunk
from polytask.tasks import Task
from polytask.tasks.ssl import ModalityContrastive

from .test_multimodal_config import _config, _write


def _inputs() -> dict[str, torch.Tensor]:
    return {"a": torch.arange(6.0).reshape(3, 2), "b": -torch.arange(3.0)[:, None]}


def test_views_keep_one_modality_each_and_targets_are_partners() -> None:
    seen, target = ModalityContrastive("a", "b", ("a", "b"))(_inputs(), torch.Generator())
    assert isinstance(seen, dict)
    mask = seen["modality_mask"]
    assert mask.tolist() == [[True, False]] * 3 + [[False, True]] * 3
    assert target.tolist() == [3.0, 4.0, 5.0, 0.0, 1.0, 2.0]
    assert torch.equal(seen["a"], torch.cat([_inputs()["a"]] * 2))
    # a modality a row already lacks stays masked in its view
    lacking = {
        **_inputs(),
        "modality_mask": torch.tensor([[True, True], [False, True], [True, True]]),
    }
    seen, _ = ModalityContrastive("a", "b", ("a", "b"))(lacking, torch.Generator())
    assert seen["modality_mask"][:3, 0].tolist() == [True, False, True]  # type: ignore[index]


def test_loss_through_a_multimodal_trunk_equals_the_formula() -> None:
    torch.manual_seed(0)
    enc = {"a": torch.nn.Linear(2, 4), "b": torch.nn.Linear(1, 4)}
    for m in enc.values():
        m.out_dim = 4  # type: ignore[assignment]
    trunk = MultiModalTrunk(enc)
    seen, target = ModalityContrastive("a", "b", ("a", "b"))(_inputs(), torch.Generator())
    z = trunk(**seen)  # type: ignore[arg-type]
    # rows 0..2 are the a-encoder alone, rows 3..5 the b-encoder alone
    x = _inputs()
    torch.testing.assert_close(z[:3], enc["a"](x["a"]))
    torch.testing.assert_close(z[3:], enc["b"](x["b"]))
    task = Task("x", "contrastive", num_classes=4, temperature=0.5)
    zn = torch.nn.functional.normalize(z, dim=-1)
    sim = zn @ zn.T / 0.5
    ref = torch.stack(
        [
            torch.logsumexp(torch.cat([sim[i, :i], sim[i, i + 1 :]]), 0) - sim[i, (i + 3) % 6]
            for i in range(6)
        ]
    ).mean()
    torch.testing.assert_close(task.compute_loss(z, target), ref)


def test_config_run_with_a_cross_modal_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "cache"))
    aux = [{"name": "xmodal", "pretext": "modality_contrastive", "modality": "ecfp",
            "partner": "desc", "dim": 8, "weight": 0.5}]  # fmt: skip
    cfg = _config(tmp_path, auxiliary=aux)
    cfg["multimodal"].pop("ensemble")
    assert (
        main(["train", str(_write(tmp_path, cfg)), "--out", str(tmp_path / "run"), "--no-progress"])
        == 0
    )
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    acc = report["metrics"]["test"]["xmodal"]["retrieval_acc"]
    assert 0.0 <= acc <= 1.0


@pytest.mark.parametrize(
    "entry, needle",
    [
        (
            {"modality": "ecfp", "partner": "smell"},
            r"key 'partner': modality 'smell' is not in the data",
        ),
        ({"modality": "ecfp"}, r"needs 'modality' and 'partner'"),
        ({"modality": "ecfp", "partner": "ecfp"}, r"must differ"),
    ],
)
def test_bad_partner_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    entry: dict, needle: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "cache"))
    cfg = _config(tmp_path, auxiliary=[{"name": "x", "pretext": "modality_contrastive", **entry}])
    assert (
        main(["train", str(_write(tmp_path, cfg)), "--out", str(tmp_path / "run"), "--no-progress"])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(needle, err[0]), err


def test_one_tensor_inputs_are_refused() -> None:
    with pytest.raises(PolytaskError, match="needs a dict of modalities"):
        ModalityContrastive("a", "b", ("a", "b"))(torch.zeros(2, 2), torch.Generator())
