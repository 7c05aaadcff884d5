"""Task presence, zero-update counting and O(K) step logs of the trainer."""

import json
import logging
import math
from types import SimpleNamespace

import pytest
import torch

from polytask._core import PolytaskError
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, TensorData
from polytask.train import Trainer

NAN = math.nan
TS = TaskSet([Task("a", "binary"), Task("b", "binary"), Task("never", "binary")])


def _data(n: int = 48) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = {"a": (x[:, 0] > 0).float(), "b": (x[:, 1] > 0).float(), "never": torch.full((n,), NAN)}
    y["a"][::4] = NAN
    return TensorData(x, y)


def _model(dead: bool = False):
    torch.manual_seed(0)
    model = build_model(mlp_trunk(6, (8,)), TS.tasks, 8)
    if dead:  # every pre-activation negative: ReLU passes no gradient to the trunk
        with torch.no_grad():
            model.trunk[0].bias.fill_(-1e4)
    return model


def _fit(tmp_path, model, steps=4, resume=False, **kw):
    trainer = Trainer(
        model, TS, JointLoader(_data(), 16), torch.optim.Adam(model.parameters(), 1e-2),
        max_steps=steps, out_dir=tmp_path, progress=False, **kw,
    )  # fmt: skip
    return trainer, trainer.fit(resume=resume)


def _records(tmp_path):
    return [json.loads(x) for x in (tmp_path / "logs" / "train.jsonl").read_text().splitlines()]


def test_a_dead_trunk_is_counted_flagged_and_warned_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="polytask.train"):
        trainer, result = _fit(tmp_path, _model(dead=True))
    assert result.zero_update_steps == 4 and trainer.state_dict()["zero_update_steps"] == 4
    records = _records(tmp_path)
    assert [r["zero_update"] for r in records] == [True] * 4
    assert all(r["shared_grad_norm"] == 0.0 and r["loss"] > 0 for r in records)
    warnings = [r.message for r in caplog.records if "zero update" in r.message]
    assert len(warnings) == 1 and warnings[0].startswith("step 1:")


def test_a_normal_run_has_no_zero_update_and_logs_presence(tmp_path):
    _, result = _fit(tmp_path, _model())
    assert result.zero_update_steps == 0
    for r in _records(tmp_path):
        assert r["zero_update"] is False and r["shared_grad_norm"] > 0
        assert r["present"][1] == 16 and r["present"][2] == 0 and 0 < r["present"][0] < 16
        assert r["losses"]["never"] == 0.0 and set(r["losses"]) == set(TS.names)
        assert "grad_cosines" not in r


class _ZeroWeights:
    """A balancer stub that applies weight 0 to every task."""

    def backward(self, losses, shared_params, *, features=None, columns=None, present=None):
        (losses * 0.0).sum().backward()
        w = torch.zeros_like(losses.detach())
        return SimpleNamespace(weights=w, gramian=None, log_dict=lambda: {"weights": w.tolist()})


def test_a_balancer_that_applies_zero_weights_is_counted(tmp_path):
    _, result = _fit(tmp_path, _model(), steps=3, balancer=_ZeroWeights())
    assert result.zero_update_steps == 3
    assert [r["weights"] for r in _records(tmp_path)] == [[0.0, 0.0, 0.0]] * 3


def test_zero_update_count_resumes(tmp_path):
    _fit(tmp_path, _model(dead=True), steps=2, checkpoint_every=2)
    trainer, result = _fit(tmp_path, _model(dead=True), steps=5, checkpoint_every=2, resume=True)
    assert trainer.state_dict()["zero_update_steps"] == 5
    assert result.zero_update_steps == 5 and len(_records(tmp_path)) == 5


def test_every_log_value_is_at_most_k_numbers(tmp_path):
    from polytask.balancing import Balancer, UPGrad

    _fit(tmp_path, _model(), balancer=Balancer(UPGrad(), mode="features"))
    for r in _records(tmp_path):
        sizes = [len(v) for v in r.values() if isinstance(v, list | dict)]
        assert max(sizes) == len(TS) and r["weights"][2] == 0.0  # absent task: weight 0


def test_gramian_log_every_must_not_be_negative():
    model = _model()
    with pytest.raises(PolytaskError, match="gramian_log_every must be >= 0, got -1"):
        Trainer(model, TS, JointLoader(_data(), 16), torch.optim.SGD(model.parameters(), 0.1),
                max_steps=2, gramian_log_every=-1)  # fmt: skip


def test_float32_log_digits_are_exact_for_float32_and_short():
    from polytask.train.logs import float32_digits

    values = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 10.0 ** torch.arange(
        -5, 5
    ).repeat(100)
    written = float32_digits(values.tolist())
    assert torch.equal(torch.tensor(written, dtype=torch.float32), values)
    assert len(json.dumps(written)) < 0.75 * len(json.dumps(values.tolist()))
    assert float32_digits([0.0, 1.0, math.inf]) == [0.0, 1.0, math.inf]


class _Fading:
    """A balancer stub whose weights collapse to 1e-9 after the first step (FAMO on a task whose
    batch loss is ~0 does this): the update vanishes without being exactly zero."""

    def __init__(self) -> None:
        self.calls = 0

    def backward(self, losses, shared_params, *, features=None, columns=None, present=None):
        scale = 1.0 if self.calls == 0 else 1e-9
        self.calls += 1
        w = torch.full_like(losses.detach(), scale)
        (losses * w).sum().backward()
        return SimpleNamespace(weights=w, gramian=None, log_dict=lambda: {"weights": w.tolist()})


def test_a_vanishing_update_is_counted_flagged_and_warned_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="polytask.train"):
        trainer, result = _fit(tmp_path, _model(), steps=4, balancer=_Fading())
    assert result.zero_update_steps == 0 and result.vanishing_update_steps == 3
    assert [r["vanishing_update"] for r in _records(tmp_path)] == [False, True, True, True]
    assert trainer.state_dict()["vanishing_update_steps"] == 3
    warnings = [r.message for r in caplog.records if "all but stopped" in r.message]
    assert len(warnings) == 1 and warnings[0].startswith("step 2:")


def test_a_normal_run_has_no_vanishing_update(tmp_path):
    _, result = _fit(tmp_path, _model(), steps=6)
    assert result.vanishing_update_steps == 0


class _Tiny:
    """A Gramian-method stub whose update is 1e-9 of the equal-weight one from the first step
    (Aligned-MTL with a near-singular Gramian does this): no drop against its own largest."""

    def backward(self, losses, shared_params, *, features=None, columns=None, present=None):
        w = torch.full_like(losses.detach(), 1e-9)
        (losses * w).sum().backward()
        log = {"weights": w.tolist(), "update_ratio": 1e-9}
        return SimpleNamespace(weights=w, gramian=None, log_dict=lambda: log)


def test_a_tiny_update_against_equal_weights_is_counted(tmp_path):
    _, result = _fit(tmp_path, _model(), steps=3, balancer=_Tiny())
    assert result.vanishing_update_steps == 3
