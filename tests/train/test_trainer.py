import json
import math

import pytest
import torch
from safetensors.torch import load_file

from polytask._core import NonFiniteLossError
from polytask.jobs.train import run_train
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import Group, JointLoader, TensorData
from polytask.train import Trainer, train_step
from tests.conftest import small_tox21


def _toy(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = {"a": (x[:, 0] > 0).float(), "r": x[:, 1] * 2}
    y["a"][::5] = math.nan
    return TensorData(x, y)


TS = TaskSet([Task("a", "binary"), Task("r", "regression")])


def test_train_step_equals_hand_written_loop():
    data = _toy()
    torch.manual_seed(0)
    m1 = build_model(mlp_trunk(6, (8,)), TS.tasks, 8)
    m2 = build_model(mlp_trunk(6, (8,)), TS.tasks, 8)
    m2.load_state_dict(m1.state_dict())
    o1, o2 = torch.optim.SGD(m1.parameters(), lr=0.1), torch.optim.SGD(m2.parameters(), lr=0.1)
    out = train_step(m1, [Group(data.inputs, data.targets)], TS, o1)
    o2.zero_grad()
    pred = m2(data.inputs)
    loss = TS["a"].compute_loss(pred["a"], data.targets["a"]) + TS["r"].compute_loss(
        pred["r"], data.targets["r"]
    )
    loss.backward()
    o2.step()
    assert out.total == pytest.approx(loss.item())
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)


def test_non_finite_loss_stops_before_update():
    data = _toy()
    data.targets["r"][0] = math.inf
    model = build_model(mlp_trunk(6, (8,)), TS.tasks, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="task 'r'"):
        train_step(
            model,
            [Group(data.inputs, data.targets)],
            TS,
            torch.optim.SGD(model.parameters(), lr=0.1),
            step=3,
        )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_trainer_learns_selects_and_stops_early(tmp_path):
    from polytask.eval import SelectionRule

    torch.manual_seed(0)
    model = build_model(mlp_trunk(6, (16,)), TS.tasks, 16)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    trainer = Trainer(
        model, TS, JointLoader(_toy(256), 32), opt, max_steps=400, val_data=_toy(128, seed=1),
        selection=SelectionRule.parse("r:rmse", TS), eval_every=8, patience=3, out_dir=tmp_path, progress=False,
    )  # fmt: skip
    result = trainer.fit()
    assert result.stopped_early and result.steps < 400
    assert result.best_score < 0.6  # target std is 2: the model has learned
    best = load_file(str(tmp_path / "checkpoints" / "best" / "model.safetensors"))
    assert all(torch.equal(best[k], v) for k, v in model.state_dict().items())
    vals = [json.loads(line) for line in (tmp_path / "logs" / "val.jsonl").read_text().splitlines()]
    assert vals[-1]["best_step"] == result.best_step and (tmp_path / "logs" / "val.csv").is_file()


@pytest.mark.needs("rdkit")
def test_multitask_job_on_real_tox21_slice_beats_chance(tmp_path):
    report = run_train(small_tox21(tmp_path, steps=150), tmp_path / "run", progress=False)
    assert report.means["test"]["roc_auc"] > 0.75
    assert (
        report.selection["rule"] == "mean:roc_auc" and "highest" in report.selection["description"]
    )
    single = run_train(
        small_tox21(tmp_path, steps=20), tmp_path / "single", single_task=True, progress=False
    )
    assert set(single.metrics["test"]) == {"NR-AhR", "SR-ARE", "SR-MMP"}
    both = run_train(
        small_tox21(tmp_path, steps=20),
        tmp_path / "vs",
        progress=False,
        baseline=tmp_path / "single" / "report.json",
    )
    assert both.comparison is not None
    comp = both.comparison["test"]
    assert comp.delta_m is not None and comp.delta_p is not None
    assert math.isfinite(comp.delta_m) and math.isfinite(comp.delta_p)
    assert comp.gains["SR-MMP"]["roc_auc"] == pytest.approx(
        (both.metrics["test"]["SR-MMP"]["roc_auc"] - single.metrics["test"]["SR-MMP"]["roc_auc"])
        / single.metrics["test"]["SR-MMP"]["roc_auc"]
    )


@pytest.mark.parametrize("method", ["upgrad", "gradnorm"])
def test_train_step_declares_head_columns_to_features_balancing(monkeypatch, method):
    # stacked linear heads declare each task's columns; the step must equal the measured path
    from polytask.balancing import Balancer
    from polytask.build.balancing import build_method

    data = _toy()
    data.targets["c"] = (data.inputs[:, 2] > 0).long() + (data.inputs[:, 3] > 0).long()
    ts = TaskSet([Task("a", "binary"), Task("c", "multiclass", num_classes=3), TS["r"]])
    torch.manual_seed(0)
    models = [build_model(mlp_trunk(6, (16, 12)), ts.tasks, 12) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    assert models[0].head_columns(["c", "r"]) == [range(1, 4), range(4, 5)]
    assert build_model(mlp_trunk(6, (8,)), ts.tasks, 8, head_hidden=4).head_columns(["a"]) is None
    seen = []
    real = Balancer.backward

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("columns"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Balancer, "backward", spy)
    for model, declared in zip(models, (True, False)):
        if not declared:
            monkeypatch.setattr(model, "head_columns", lambda tasks: None)
        bal = Balancer(build_method(method, {}), mode="features")
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            train_step(model, [Group(data.inputs, data.targets)], ts, opt, balancer=bal)
    assert seen[0] == [range(0, 1), range(1, 4), range(4, 5)] and seen[-1] is None
    for p0, p1 in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p0, p1)
