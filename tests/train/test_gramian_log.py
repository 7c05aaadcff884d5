"""The Gramian / gradient-cosine EMA: pinned updates, the binary log, exact resume."""

import json
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from polytask.balancing import Balancer, UPGrad
from polytask.models import build_model, mlp_trunk
from polytask.tasks import Task, TaskSet
from polytask.tasks.data import JointLoader, TensorData
from polytask.train import Trainer
from polytask.train.gramian_log import EMA_RATE, GramianAverage

NAN = math.nan


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def test_pinned_ema_over_present_pairs_only():
    avg = GramianAverage(["x", "y", "z"])
    g1 = torch.tensor([[4.0, 2.0, 0.0], [2.0, 9.0, 0.0], [0.0, 0.0, 0.0]])  # z absent
    avg.update(g1, torch.tensor([5, 3, 0]), step=1)
    g2 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 4.0]])  # y: zero gradient
    avg.update(g2, torch.tensor([1, 2, 1]), step=2)
    r = EMA_RATE
    t = avg.tensors()
    assert t["gramian_ema"][0].tolist() == pytest.approx([(1 - r) * 4 + r, (1 - r) * 2, 1.0])
    assert t["gramian_ema"][1, 1].item() == pytest.approx((1 - r) * 9)
    assert t["gramian_ema"][2, 2].item() == 4.0  # first value taken as is
    cos = t["cosine_ema"]
    assert cos[0, 1].item() == pytest.approx(1 / 3)  # y's zero gradient: no cosine at step 2
    assert cos[0, 2].item() == pytest.approx(0.5) and cos[2, 0].item() == pytest.approx(0.5)
    assert math.isnan(cos[1, 2].item()) and math.isnan(cos[1, 1].item()) is False
    assert t["pairs_seen"].tolist() == [[2, 2, 1], [2, 2, 1], [1, 1, 1]]
    assert avg.step == 2


def test_nothing_is_written_before_the_first_gramian(tmp_path):
    assert GramianAverage(["a"]).write(tmp_path) is None and not list(tmp_path.iterdir())


TS = TaskSet([Task("a", "binary"), Task("b", "binary"), Task("c", "regression")])


def _data(n: int = 64) -> TensorData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = {"a": (x[:, 0] > 0).float(), "b": (x[:, 1] > 0).float(), "c": x[:, 2] - x[:, 3]}
    y["a"][:60] = NAN  # batches without a label for "a"
    return TensorData(x, y)


class _Grams:
    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_step(self, info) -> None:
        self.seen.append((info.gramian.clone(), info.present.clone()))


def _fit(out, steps, resume=False, every=2, callbacks=()):
    torch.manual_seed(0)
    model = build_model(mlp_trunk(5, (8,)), TS.tasks, 8)
    trainer = Trainer(
        model, TS, JointLoader(_data(), 16, seed=1), torch.optim.SGD(model.parameters(), 0.05),
        max_steps=steps, balancer=Balancer(UPGrad()), out_dir=out, checkpoint_every=3,
        progress=False, gramian_log_every=every, callbacks=callbacks,
    )  # fmt: skip
    trainer.fit(resume=resume)
    return out / "logs" / "gramian.safetensors"


def test_the_file_holds_the_ema_of_every_step_gramian(tmp_path):
    grams = _Grams()
    path = _fit(tmp_path, 5, callbacks=[grams])
    ref = GramianAverage(TS.names)
    for step, (g, present) in enumerate(grams.seen, 1):
        ref.update(g, present, step)
    assert any(int(p[0]) == 0 for _, p in grams.seen)  # some steps had "a" absent
    got = load_file(str(path))
    assert set(got) == {"gramian_ema", "cosine_ema", "pairs_seen"}
    for k, v in ref.file_tensors().items():
        assert _same(got[k], v) and got[k].dtype == v.dtype
    assert got["cosine_ema"].dtype == torch.float32 and got["pairs_seen"].dtype == torch.int32
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["tasks"]) == ["a", "b", "c"] and meta["step"] == "5"
    assert float(meta["rate"]) == EMA_RATE
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "gramian.safetensors", "train.jsonl", "val.csv", "val.jsonl",
    ]  # fmt: skip
    lines = (tmp_path / "logs" / "train.jsonl").read_text().splitlines()
    assert all("grad_cosines" not in json.loads(line) for line in lines)


def test_the_ema_resumes_bit_exactly(tmp_path):
    whole = load_file(str(_fit(tmp_path / "whole", 7)))
    _fit(tmp_path / "cut", 3)
    cut = load_file(str(_fit(tmp_path / "cut", 7, resume=True)))
    assert all(torch.equal(whole[k], cut[k]) for k in whole)


def test_zero_disables_the_file(tmp_path):
    assert not _fit(tmp_path, 3, every=0).exists()
